-- hlsgate.watch — the watch page (issue #15): GET /watch/ serves www/watch.html, a small
-- player that plays any gateway or proxy URL with hls.js (fetched at install time by
-- scripts/fetch-player.sh, pinned and integrity-checked) or natively in Safari. Nothing
-- is loaded from anywhere else, and the page may not be framed.
local util = require("hlsgate.util")

local M = {}

local FILES = {
  [""] = "text/html; charset=utf-8", -- /watch/ is watch.html
  ["watch.js"] = "text/javascript; charset=utf-8",
  ["watch.css"] = "text/css; charset=utf-8",
  ["hls.min.js"] = "text/javascript; charset=utf-8",
}

-- Security: the page runs only its own scripts; media and playlists may come from the
-- gateway, a bucket (presigned) or an origin the viewer names.
local CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " ..
            "media-src 'self' blob: http: https:; connect-src 'self' http: https:; worker-src 'self' blob:; " ..
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

--- M.dir() -> the www directory: $HLSGATE_WWW_DIR, else next to the Lua library
-- (<repo>/www in the source tree, <prefix>/share/hlsgate/www when installed).
function M.dir()
  local env = util.env("HLSGATE_WWW_DIR")
  if env then return env end
  local here = package.searchpath("hlsgate.watch", package.path) or "lua/hlsgate/watch.lua"
  return (here:gsub("[^/]*$", "")) .. "../../www"
end

--- M.new{ path = "/watch", dir = M.dir() } -> handler(req)
function M.new(opts)
  opts = opts or {}
  local path = opts.path or "/watch"
  local dir = opts.dir or M.dir()
  return function(req)
    if req.path ~= path and req.path:sub(1, #path + 1) ~= path .. "/" then return nil end
    if req.method ~= "GET" and req.method ~= "HEAD" then
      return util.deny(405, "method not allowed", { Allow = "GET, HEAD" })
    end
    -- /watch → /watch/ so the page's relative URLs resolve under it (a #fragment survives).
    if req.path == path then
      return { status = 301, headers = { Location = path .. "/", ["Cache-Control"] = "no-cache" }, body = "", route = "watch" }
    end
    local name = req.path:sub(#path + 2)
    local ctype = FILES[name]
    if not ctype then return nil end
    return {
      origin = { type = "file", root = dir, path = name == "" and "watch.html" or name },
      content_type = ctype,
      -- the page's own types, served inline (with the strict CSP below instead of sandbox)
      content_types = { allow = { ctype:match("^[^;]+") } },
      headers = { ["Cache-Control"] = "no-cache", ["Content-Security-Policy"] = CSP,
                  ["X-Frame-Options"] = "DENY", ["Referrer-Policy"] = "no-referrer" },
      route = "watch",
    }
  end
end

return M
