-- policies/examples/auth_request.lua — the auth_request pattern (nginx's, OpenResty's):
-- before serving HLS from a local directory, ask the web application whether this viewer
-- may watch, and remember its answer for a few seconds.
--
--   GET /watch/{path}      → GET $HLSGATE_AUTH_URL with the viewer's Cookie and
--                            Authorization and X-Original-URI: /watch/{path}
--                            2xx: served from $HLSGATE_DEMO_DIR; 401 or 403: 403;
--                            anything else, a timeout or no answer: 503 (fails closed)
--
-- Environment: HLSGATE_AUTH_URL (required; e.g. http://app.internal:8080/auth),
-- HLSGATE_AUTH_TTL (seconds a decision is cached in hg.shared, default 10; 0: never),
-- HLSGATE_AUTH_TIMEOUT (seconds, default 2), HLSGATE_DEMO_DIR (default var/demo).
-- The decision is cached per asset directory and per credentials (hashed), so a player's
-- playlist and segment requests cost one call to the application per TTL.
local hg = require("hlsgate")
local util = require("hlsgate.util")

local AUTH_URL = util.env("HLSGATE_AUTH_URL")
local TTL = util.env_number("HLSGATE_AUTH_TTL", 10, 0, 3600)
local TIMEOUT = util.env_number("HLSGATE_AUTH_TIMEOUT", 2, 1, 60)
local ROOT = util.env("HLSGATE_DEMO_DIR", "var/demo")

-- Asks the application; returns true (allowed), false (denied) or nil, err (no answer).
local function ask(req)
  local res, err = hg.http.request {
    url = AUTH_URL,
    headers = {
      ["Cookie"] = req.headers.cookie,
      ["Authorization"] = req.headers.authorization,
      ["X-Original-URI"] = req.path,
    },
    timeout = TIMEOUT,
    allow_private = true, -- the application is on the internal network
  }
  if not res then return nil, err end
  if res.status >= 200 and res.status < 300 then return true end
  if res.status == 401 or res.status == 403 then return false end
  return nil, "auth service answered " .. res.status
end

local function allowed(req)
  local dir = req.path:match("^(.*)/") or req.path
  local who = hg.crypto.sha256_hex((req.headers.cookie or "") .. "\0" .. (req.headers.authorization or ""))
  local key = "auth:" .. who .. ":" .. dir
  local cached = TTL > 0 and hg.shared.get(key)
  if cached ~= nil and cached ~= false then return cached == "allow" end
  local ok, err = ask(req)
  if ok == nil then return nil, err end
  if TTL > 0 then hg.shared.set(key, ok and "allow" or "deny", TTL) end
  return ok
end

return {
  on_request = function(req)
    if req.path:sub(1, 7) ~= "/watch/" then return nil end
    if not AUTH_URL then return util.deny(503, "HLSGATE_AUTH_URL is not configured") end
    local ok, err = allowed(req)
    if ok == nil then
      hg.log("warn", "auth_request failed, refusing:", err)
      return util.deny(503, "authorization unavailable") -- fails closed
    end
    if not ok then return util.deny(403, "not allowed") end
    local path = hg.url.join_key("", req.path:sub(8))
    if not path then return util.deny(400, "bad path") end
    return {
      origin = { type = "file", root = ROOT, path = path },
      rewrite = { default = "keep" },
      private = true,
      route = "watch",
    }
  end,
}
