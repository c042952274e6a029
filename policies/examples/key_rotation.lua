-- policies/examples/key_rotation.lua — the private-bucket recipe with several JWT secrets,
-- chosen by the token's `kid` header, so the secret can be rotated without cutting off
-- viewers:
--
--   HLSGATE_JWT_KEYS="2024-06:old-secret,2024-07:new-secret"   kid:secret, comma separated
--   HLSGATE_JWT_KID="2024-07"      the key POST /stream/token signs with (default: the last)
--   HLSGATE_JWT_SECRET=…           optional: also accepted for tokens without a kid
--                                  (`hlsgate token`, apps not yet sending a kid)
--
-- Rotation: append the new key and point HLSGATE_JWT_KID (or the app) at it, reload
-- (kill -HUP); once the old key's tokens have expired, remove it and reload again.
-- Secrets may contain ':' but not ','. The other variables are the private bucket's.
local util = require("hlsgate.util")
local private_bucket = require("hlsgate.private_bucket")

local keys, last = {}, nil
for _, item in ipairs(util.split(util.env("HLSGATE_JWT_KEYS", ""))) do
  local kid, secret = item:match("^([^:]+):(.+)$")
  if not kid then error("HLSGATE_JWT_KEYS: each item must be kid:secret", 0) end
  keys[kid], last = secret, kid
end
local kid = util.env("HLSGATE_JWT_KID", last)
if kid and not keys[kid] then error("HLSGATE_JWT_KID: no such kid in HLSGATE_JWT_KEYS", 0) end
-- hg.jwt.verify tries array entries for every token and kid entries only for their kid
keys[1] = util.env("HLSGATE_JWT_SECRET")

local secret = (next(keys) ~= nil) and keys or nil -- none at all: the recipe answers 503
return {
  on_request = util.router({
    { prefix = "/stream/", handler = private_bucket.from_env({ secret = secret, kid = kid }) },
  }),
}
