-- policies/examples/revocation.lua — the private-bucket recipe with a token revocation
-- list kept in hg.shared (shared by all workers, kept across reloads, lost on restart;
-- when the dictionary is full its least recently used entries are evicted).
--
--   POST /admin/revoke   Authorization: Bearer $HLSGATE_ADMIN_KEY, JSON {"token": "…"}
--                        → 200 {"revoked": true, "expires_in": N}: the token (all tokens
--                        with its `jti` claim when it has one) is refused with 401 for
--                        the rest of its lifetime; 200 {"revoked": false} for a token that
--                        has already expired; 400 for one this gateway did not sign;
--                        401 without the admin key.
--
-- Playlists fetched after the revocation are refused; presigned segment URLs already
-- handed out stay valid until HLSGATE_PRESIGN_TTL runs out (a VOD player holding its media
-- playlist can finish within that time). Environment: the private bucket's
-- (docs/policies.md).
local hg = require("hlsgate")
local util = require("hlsgate.util")
local private_bucket = require("hlsgate.private_bucket")

local SECRET = util.env("HLSGATE_JWT_SECRET")
local ADMIN_KEY = util.env("HLSGATE_ADMIN_KEY")
local LEEWAY = 30 -- the recipe's clock-skew allowance: a token lives until exp + LEEWAY

local stream = util.router({
  { prefix = "/stream/", handler = private_bucket.from_env() },
})

-- The revocation-list entry of a verified token: its jti, or else its hash.
local function entry(token, claims)
  if type(claims.jti) == "string" and claims.jti ~= "" then return "revoked:jti:" .. claims.jti end
  return "revoked:sha256:" .. hg.crypto.sha256_hex(token)
end

local function revoke(req)
  if req.method ~= "POST" then return util.deny(405, "method not allowed", { Allow = "POST" }) end
  local given = (req.headers.authorization or ""):match("^[Bb]earer%s+(.+)$")
  if not ADMIN_KEY or not given or not hg.crypto.equals(given, ADMIN_KEY) then
    return util.deny(401, "admin key required")
  end
  if not SECRET then return util.deny(503, "HLSGATE_JWT_SECRET is not configured") end
  local body = req.body and hg.json_decode(req.body)
  if type(body) ~= "table" or type(body.token) ~= "string" then
    return util.deny(400, 'JSON body {"token": "…"} required')
  end
  local claims, why = hg.jwt.verify(body.token, SECRET, { alg = "HS256", leeway = LEEWAY })
  if not claims then
    if why == "token expired" then return hg.json(200, { revoked = false, reason = why }) end
    return util.deny(400, "not a token of this gateway: " .. why)
  end
  local ttl = math.max(1, math.min(claims.exp + LEEWAY - os.time(), 31536000))
  local ok, err = hg.shared.set(entry(body.token, claims), true, ttl)
  if not ok then return util.deny(503, "cannot store the revocation: " .. err) end
  return hg.json(200, { revoked = true, expires_in = ttl })
end

local function is_revoked(token)
  local claims = SECRET and token and hg.jwt.verify(token, SECRET, { alg = "HS256", leeway = LEEWAY })
  return claims and hg.shared.get(entry(token, claims)) ~= nil
end

local function label(res, route)
  res.route = route
  return res
end

return {
  on_request = function(req)
    if req.path == "/admin/revoke" then return label(revoke(req), "admin") end
    if req.path:sub(1, 12) == "/stream/hls/" and is_revoked(req.query.token) then
      return label(util.deny(401, "token revoked"), "stream")
    end
    return stream(req)
  end,
}
