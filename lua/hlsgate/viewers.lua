-- hlsgate.viewers — viewer state shared by every replica, for the private-bucket recipe
-- (docs/callouts.md, docs/policies.md): fleet-wide token revocation by `jti`, a limit of
-- concurrent streams per viewer, and tokens bound to the client address or User-Agent.
-- Revocation and the stream limit live in Redis (hg.redis: HLSGATE_REDIS_URL), so they hold
-- across workers, replicas and restarts; binding needs no Redis.
--
-- Redis keys (prefix `opts.prefix`, default "hlsgate:"):
--   <prefix>revoked:<jti>    "1", expiring when the token does (exp + leeway)
--   <prefix>streams:<uid>    a sorted set of stream ids (the token's jti) scored by the
--                            last time (Unix seconds) the stream asked for anything;
--                            members older than the lease are dropped on every check
local hg = require("hlsgate")
local util = require("hlsgate.util")

local M = {}

-- One round trip does both checks atomically (two gateways admitting the same viewer at
-- once cannot both take the last slot): -1 revoked, 0 over the limit, 1 admitted.
local CHECK = [[
if KEYS[1] ~= '' and redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
if KEYS[2] == '' then return 1 end
local now, lease, limit, sid = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - lease)
if redis.call('ZSCORE', KEYS[2], sid) or redis.call('ZCARD', KEYS[2]) < limit then
  redis.call('ZADD', KEYS[2], now, sid)
  redis.call('EXPIRE', KEYS[2], lease)
  return 1
end
return 0
]]

--- M.new(opts) -> viewers
-- opts: redis (boolean: Redis is configured), max_streams (per uid; 0 = no limit),
-- lease (seconds a stream holds its slot without a request, 30), fail ("open" or "closed":
-- what a request gets while Redis is down), bind ("ip", "ua" or nil), trusted_proxies
-- (networks whose X-Forwarded-For is believed), leeway (seconds), prefix.
function M.new(opts)
  local v = {}
  local prefix = opts.prefix or "hlsgate:"
  local lease = opts.lease or 30
  local max_streams = opts.max_streams or 0
  local fail_open = opts.fail ~= "closed"
  local trusted = opts.trusted_proxies and #opts.trusted_proxies > 0
    and util.cidr_matcher(opts.trusted_proxies) or nil

  --- v.per_request: true when check(req, claims) looks at more than the token (Redis
  -- state, the client's address or User-Agent): its answer may then not be reused.
  v.per_request = opts.redis or opts.bind ~= nil or max_streams > 0

  --- v.client(req) -> the viewer's address (X-Forwarded-For behind a trusted proxy).
  function v.client(req) return util.client_address(req, trusted) end

  -- What the binding claim of a token issued to this client would be.
  local function binding(req)
    if opts.bind == "ip" then return "cip", v.client(req) end
    if opts.bind == "ua" then return "uah", hg.crypto.sha256_hex(req.headers["user-agent"] or "") end
    return nil
  end

  --- v.mint_claims(body, claims): adds jti (with Redis: what revocation and leases key
  -- on), uid and the binding to a new token. body.uid names the viewer; body.client_ip /
  -- body.user_agent bind the token to the viewer's (not the minting app's) address or browser.
  function v.mint_claims(body, claims)
    if opts.redis then claims.jti = hg.crypto.hex(hg.crypto.random(16)) end
    if type(body.uid) == "string" and body.uid ~= "" then claims.uid = body.uid end
    if opts.bind == "ip" and type(body.client_ip) == "string" then claims.cip = body.client_ip end
    if opts.bind == "ua" and type(body.user_agent) == "string" then
      claims.uah = hg.crypto.sha256_hex(body.user_agent)
    end
  end

  --- v.check(req, claims) -> nil (admitted) | a deny response
  function v.check(req, claims)
    local claim, want = binding(req)
    if claim then
      -- Security: a bound token used from another address or browser is refused; so is an
      -- unbound token when binding is required (it could be shared freely).
      if type(claims[claim]) ~= "string" then return util.deny(403, "token is not bound to a client") end
      if not hg.crypto.equals(claims[claim], want) then
        return util.deny(403, "token bound to another client")
      end
    end
    if not opts.redis then return nil end
    local jti = type(claims.jti) == "string" and claims.jti or nil
    local uid = type(claims.uid) == "string" and claims.uid or nil
    local rkey = jti and prefix .. "revoked:" .. jti or ""
    local skey = (max_streams > 0 and uid and jti) and prefix .. "streams:" .. uid or ""
    if rkey == "" and skey == "" then return nil end
    local r, err = hg.redis.call("EVAL", CHECK, 2, rkey, skey, os.time(), lease, max_streams, jti or "")
    if r == nil then
      hg.log("warn", "viewer check failed, failing " .. (fail_open and "open" or "closed") .. ": " .. tostring(err))
      if fail_open then return nil end
      return util.deny(503, "viewer check unavailable")
    end
    if r == -1 then return util.deny(401, "token revoked") end
    if r == 0 then return util.deny(429, "too many concurrent streams for this viewer") end
    return nil
  end

  --- v.revoke(jti, exp) -> true | nil, err: refuses the token everywhere until exp.
  function v.revoke(jti, exp)
    if not opts.redis then return nil, "revocation needs HLSGATE_REDIS_URL" end
    local ttl = math.max(1, math.min(exp + (opts.leeway or 30) - os.time(), 31536000))
    local ok, err = hg.redis.call("SET", prefix .. "revoked:" .. jti, "1", "EX", ttl)
    if not ok then return nil, err end
    return ttl
  end

  return v
end

--- M.from_env() -> viewers configured by HLSGATE_REDIS_URL, HLSGATE_MAX_STREAMS,
-- HLSGATE_STREAM_LEASE, HLSGATE_REDIS_FAIL, HLSGATE_BIND_CLIENT, HLSGATE_TRUSTED_PROXIES.
function M.from_env()
  local bind = util.env("HLSGATE_BIND_CLIENT")
  if bind and bind ~= "ip" and bind ~= "ua" then
    error("HLSGATE_BIND_CLIENT must be ip or ua (got '" .. bind .. "')", 0)
  end
  local fail = util.env("HLSGATE_REDIS_FAIL", "open")
  if fail ~= "open" and fail ~= "closed" then
    error("HLSGATE_REDIS_FAIL must be open or closed (got '" .. fail .. "')", 0)
  end
  local opts = {
    redis = util.env("HLSGATE_REDIS_URL") ~= nil,
    max_streams = util.env_number("HLSGATE_MAX_STREAMS", 0, 0, 1000),
    lease = util.env_number("HLSGATE_STREAM_LEASE", 30, 1, 3600),
    fail = fail,
    bind = bind,
    trusted_proxies = util.split(util.env("HLSGATE_TRUSTED_PROXIES")),
  }
  if opts.max_streams > 0 and not opts.redis then
    error("HLSGATE_MAX_STREAMS needs HLSGATE_REDIS_URL (the limit is shared by every replica)", 0)
  end
  return M.new(opts)
end

return M
