-- hlsgate.open_proxy — the "m3u8 proxy" recipe (SPEC §1, §9): GET /proxy?url=<absolute
-- http(s) URL> fetches the URL, rewrites every URI of a playlist to come back through
-- /proxy?url=…, streams everything else, caches, and adds CORS headers so a browser
-- player can use origins that send none.
local hg = require("hlsgate")
local util = require("hlsgate.util")

local M = {}

-- Signed child URLs (opts.sign_key, HLSGATE_PROXY_SIGN_KEY): the core appends exp and
-- sig to every URL it rewrites through the proxy (plan.proxy.sign, src/core/plan.h);
-- sig = base64url(HMAC-SHA256(key, exp .. "\n" .. absolute URL [.. "\n" .. headers])),
-- where headers is the stream's upstream headers parameter when it has one. The same
-- function signs entry URLs for an operator's app (M.sign_url).
local function signature(key, url, exp, headers)
  local msg = exp .. "\n" .. url
  if headers then msg = msg .. "\n" .. headers end
  return hg.crypto.base64url_encode(hg.crypto.hmac("sha256", key, msg))
end

--- M.sign_url(public_url, url, key [, ttl [, now [, headers]]]) -> the proxy URL of `url`
-- with exp and sig, valid for ttl (3600) to 2*ttl seconds (exp rounds up to a multiple of
-- ttl, as in the core). public_url is the proxy's base, e.g. "https://gw.example.com/proxy".
-- headers: upstream headers for this stream, { Referer = …, ["User-Agent"] = … } (see
-- M.new), signed with the URL and inherited by every child URL.
function M.sign_url(public_url, url, key, ttl, now, headers)
  ttl = ttl or 3600
  local exp = tostring(((now or os.time()) // ttl + 2) * ttl)
  local h = headers and hg.json_encode(headers) or nil
  return public_url .. "?exp=" .. exp .. "&sig=" .. signature(key, url, exp, h)
    .. "&url=" .. hg.url.encode(url) .. (h and "&headers=" .. hg.url.encode(h) or "")
end

-- The upstream headers a stream may carry (the origin checks them: hotlink protection,
-- sessions). Names are matched case-insensitively and sent as written here.
local STREAM_HEADERS = { referer = "Referer", origin = "Origin", ["user-agent"] = "User-Agent",
                         cookie = "Cookie" }

-- Reads the stream's headers parameter: a JSON object of STREAM_HEADERS. Returns a table
-- (nil when absent) or nil, why.
local function stream_headers(raw)
  if raw == nil then return nil end
  local t = #raw <= 4096 and hg.json_decode(raw)
  if type(t) ~= "table" then return nil, "headers must be a JSON object" end
  local out = {}
  for k, v in pairs(t) do
    local name = type(k) == "string" and STREAM_HEADERS[k:lower()]
    if not name then return nil, "headers: only Referer, Origin, User-Agent and Cookie may be set" end
    -- Security: nothing that could split the request to the origin.
    if type(v) ~= "string" or #v > 2048 or v:find("[%z\r\n]") then return nil, "headers: bad value for " .. name end
    out[name] = v
  end
  return out
end

-- Checks exp and sig of a request. Returns "none" (neither given), "ok", or "bad", why.
-- Security: the MAC is compared in constant time; an expired one is refused even when
-- the MAC is right.
local function check_signature(q, key)
  if q.sig == nil and q.exp == nil then return "none" end
  local exp, sig = q.exp, q.sig
  if type(exp) ~= "string" or type(sig) ~= "string" or not exp:match("^%d%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?$") then
    return "bad", "malformed signature"
  end
  if not (q.url and hg.crypto.equals(sig, signature(key, q.url, exp, q.headers))) then
    return "bad", "bad signature"
  end
  if tonumber(exp) < os.time() then return "bad", "expired signature" end
  return "ok"
end

-- Security: an open proxy reachable beyond loopback with neither a key, nor signed URLs,
-- nor a host allowlist is a free relay for anyone on the network: say so, loudly, once
-- per process (the policy is loaded by --check-style validation and by every worker).
local function warn_if_exposed(opts)
  if not (hg.listening_beyond_loopback and hg.log) then return end
  if opts.key or opts.sign_key or opts.allow_hosts then return end
  if hg.shared and not hg.shared.add("hlsgate.open_proxy.exposure_warned", true) then return end
  hg.log("warn", "OPEN PROXY EXPOSED: " .. table.concat(hg.listen, ", ") .. " is reachable beyond "
    .. "loopback and the proxy needs no key: anyone who can reach it gets a free relay. Set "
    .. "HLSGATE_PROXY_KEY, HLSGATE_PROXY_SIGN_KEY or HLSGATE_ALLOW_HOSTS, or listen on 127.0.0.1.")
end

--- M.new(opts) -> handler(req)
-- opts: path ("/proxy"), public_url (base of rewritten URLs; default from the request's
-- Host), cache_ttl (300), cors (util.cors object), allow_hosts (list of host patterns,
-- "*.example.com" wildcards; nil = any public host), allow_private (false), key (when
-- set, requests must carry key=<it>), headers (request headers for the origin, e.g.
-- Referer/User-Agent: a table, or function(origin) -> table or nil, given hg.url.origin
-- of the URL; its answer is kept with the URL's plan), timeout (seconds), sign_key
-- (signed child URLs: every rewritten
-- URL carries exp and sig, and a request needs a valid one — 403 when bad or expired,
-- 401 when absent unless it carries the key; the key is then never written into child
-- URLs), sign_ttl (seconds, 3600).
-- A plan is answered frozen (hg.plan): a wrapper that edits it takes hg.plan_table(res).
function M.new(opts)
  local path = opts.path or "/proxy"
  if opts.sign_key and #opts.sign_key < 16 then
    error("open_proxy: the signing key must be at least 16 bytes", 2)
  end
  -- A cached playlist must not outlive its children's signatures (exp is ttl..2*ttl away).
  local sign_ttl = opts.sign_ttl or 3600
  local cache_ttl = opts.cache_ttl or 300
  if opts.sign_key then cache_ttl = math.min(cache_ttl, sign_ttl // 2) end
  warn_if_exposed(opts)
  local cors = opts.cors or util.cors("*")
  -- Frozen plans (hg.plan) of hot requests, per worker: everything in a plan follows from
  -- the query (url, key, signature, headers), the base and the CORS answer (the Origin
  -- header), so one made for the same three is reused as it is; only a signature's
  -- expiry is checked again. Bounded: it starts over when full.
  local memo, memo_n, MEMO_MAX = {}, 0, 512
  local function answer(req, h, base)
    -- Security: constant-time comparison of the optional access key.
    local q = req.query
    local keyed = opts.key and q.key and hg.crypto.equals(q.key, opts.key)
    local signed = false
    if opts.sign_key then -- signed URLs; the key (if any) only admits entry URLs
      local st, why = check_signature(q, opts.sign_key)
      if st == "bad" then return util.deny(403, why, h) end
      if st == "none" and not keyed then return util.deny(401, "missing signature", h) end
      signed = st == "ok"
    elseif opts.key and not keyed then
      return util.deny(401, "missing or wrong key", h)
    end
    -- Per-stream upstream headers: only on a protected proxy (a key or a signature that
    -- covers them), or anyone could make the gateway send any Cookie anywhere.
    local sh, why = stream_headers(q.headers)
    if why then return util.deny(400, why, h) end
    if sh and not (keyed or signed) then
      return util.deny(403, "upstream headers need HLSGATE_PROXY_KEY or a signed URL", h)
    end
    local url = q.url
    if not url or url == "" then return util.deny(400, "missing url parameter", h) end
    local origin = hg.url.origin(url)
    if not origin then return util.deny(400, "url must be an absolute http(s) URL", h) end
    local up = opts.headers
    if type(up) == "function" then up = up(origin) end
    if sh then
      local merged = {}
      for k, v in pairs(up or {}) do merged[k] = v end
      for k, v in pairs(sh) do merged[k] = v end
      up = merged
    end
    local params = nil -- inherited by every child URL (the signature covers them)
    if opts.key and not opts.sign_key then params = { key = opts.key } end
    if sh then
      params = params or {}
      params.headers = q.headers
    end
    local u = hg.url.parse(url) -- parses: hg.url.origin accepted it
    -- the last path segment ("^.*/" backtracks once: linear, where "([^/]+)$" retries
    -- from every position)
    local last = u and u.path:match("^.*/([^/]+)$") or "index"
    -- Reusable (src/lua/reuse.c) when the policy allows it: the answer follows from the
    -- target (checked above), the scheme, Host and Origin; a signed one until it expires.
    local exp = signed and tonumber(q.exp) or nil
    local plan = hg.plan({
      origin = { type = "http", url = url, headers = up, allow_private = opts.allow_private,
                 allow_hosts = opts.allow_hosts, max_redirects = 5 },
      rewrite = { default = "proxy" },
      proxy = { prefix = base .. path .. "?url=",
                params = params,
                sign = opts.sign_key and { secret = opts.sign_key, ttl = sign_ttl } or nil },
      cache_ttl = cache_ttl,
      headers = h,
      filename = hg.url.decode(last) or last,
      timeout = opts.timeout,
      route = "proxy",
    }, { vary = { "host", "origin" }, ttl = 60, expires = exp })
    if not plan then return util.deny(503, "out of memory", h) end -- (hg.plan: nil, err)
    return plan, exp
  end
  -- Every answer of this recipe counts under the "proxy" route in /metrics.
  local function handler(req)
    if req.path ~= path then return nil end
    local method = req.method
    if method == "OPTIONS" then
      local res = cors.preflight(req)
      res.route = "proxy"
      return res
    end
    if method ~= "GET" and method ~= "HEAD" then
      local h = cors.headers(req)
      h.Allow = "GET, HEAD, OPTIONS"
      local res = util.deny(405, "method not allowed", h)
      res.route = "proxy"
      return res
    end
    local hdrs = req.headers
    local base = opts.public_url or (req.scheme .. "://" .. (hdrs.host or "localhost"))
    local mkey = req.raw_query .. "\n" .. base .. "\n" .. (hdrs.origin or "")
    local m = memo[mkey]
    if m and (m.exp == nil or m.exp >= os.time()) then return m.plan end
    local res, exp = answer(req, cors.headers(req), base)
    if type(res) == "table" then -- an error answer: not kept
      res.route = "proxy"
      return res
    end
    if memo_n >= MEMO_MAX then memo, memo_n = {}, 0 end
    if not memo[mkey] then memo_n = memo_n + 1 end
    memo[mkey] = { plan = res, exp = exp }
    return res
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
    sign_key = util.env("HLSGATE_PROXY_SIGN_KEY"),
    sign_ttl = util.env_number("HLSGATE_PROXY_SIGN_TTL", 3600, 60, 604800),
  }
  if opts.public_url then opts.public_url = opts.public_url:gsub("/+$", "") end
  for k, v in pairs(overrides or {}) do opts[k] = v end
  return M.new(opts)
end

return M
