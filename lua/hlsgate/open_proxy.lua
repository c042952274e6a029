-- hlsgate.open_proxy — the "m3u8 proxy" recipe (SPEC §1, §9): GET /proxy?url=<absolute
-- http(s) URL> fetches the URL, rewrites every URI of a playlist to come back through
-- /proxy?url=…, streams everything else, caches, and adds CORS headers so a browser
-- player can use origins that send none.
local hg = require("hlsgate")
local util = require("hlsgate.util")

local M = {}

--- M.new(opts) -> handler(req)
-- opts: path ("/proxy"), public_url (base of rewritten URLs; default from the request's
-- Host), cache_ttl (300), cors (util.cors object), allow_hosts (list of host patterns,
-- "*.example.com" wildcards; nil = any public host), allow_private (false), key (when
-- set, requests must carry key=<it>), headers (request headers for the origin, e.g.
-- Referer/User-Agent), timeout (seconds).
function M.new(opts)
  local path = opts.path or "/proxy"
  local cors = opts.cors or util.cors("*")
  local handle
  -- Every answer of this recipe counts under the "proxy" route in /metrics.
  local function handler(req)
    local res = handle(req)
    if type(res) == "table" then res.route = res.route or "proxy" end
    return res
  end
  handle = function(req)
    if req.path ~= path then return nil end
    if req.method == "OPTIONS" then return cors.preflight(req) end
    local h = cors.headers(req)
    if req.method ~= "GET" and req.method ~= "HEAD" then
      h.Allow = "GET, HEAD, OPTIONS"
      return util.deny(405, "method not allowed", h)
    end
    -- Security: constant-time comparison of the optional access key.
    if opts.key and not (req.query.key and hg.crypto.equals(req.query.key, opts.key)) then
      return util.deny(401, "missing or wrong key", h)
    end
    local url = req.query.url
    if not url or url == "" then return util.deny(400, "missing url parameter", h) end
    local origin = hg.url.origin(url)
    if not origin then return util.deny(400, "url must be an absolute http(s) URL", h) end
    local base = opts.public_url or ("http://" .. (req.headers.host or "localhost"))
    local u = hg.url.parse(url) -- parses: hg.url.origin accepted it
    local last = u and u.path:match("([^/]+)$") or "index" -- the last path segment
    return {
      origin = { type = "http", url = url, headers = opts.headers, allow_private = opts.allow_private,
                 allow_hosts = opts.allow_hosts, max_redirects = 5 },
      rewrite = { default = "proxy" },
      proxy = { prefix = base .. path .. "?url=", params = opts.key and { key = opts.key } or nil },
      cache_ttl = opts.cache_ttl or 300,
      headers = h,
      filename = hg.url.decode(last) or last,
      timeout = opts.timeout,
    }
  end
  return handler
end

--- M.from_env([overrides]) -> handler configured by the SPEC §9 environment variables.
function M.from_env(overrides)
  local hosts = util.env("HLSGATE_ALLOW_HOSTS")
  local opts = {
    public_url = util.env("HLSGATE_PUBLIC_URL"),
    cache_ttl = util.env_number("HLSGATE_CACHE_TTL", 300, 0),
    cors = util.cors(util.split(util.env("HLSGATE_CORS_ORIGINS", "*"))),
    allow_hosts = hosts and util.split(hosts) or nil,
    allow_private = util.env_bool("HLSGATE_ALLOW_PRIVATE", false),
    key = util.env("HLSGATE_PROXY_KEY"),
  }
  if opts.public_url then opts.public_url = opts.public_url:gsub("/+$", "") end
  for k, v in pairs(overrides or {}) do opts[k] = v end
  return M.new(opts)
end

return M
