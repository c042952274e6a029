-- policies/examples/rendition_filter.lua — the private-bucket recipe, plus: a viewer sees
-- only the renditions its token allows. The token carries optional claims
--
--   maxh   the tallest picture (RESOLUTION=WxH: H) this viewer may get, e.g. 720
--   maxbw  the highest BANDWIDTH (bits/s) this viewer may get, e.g. 3000000
--
-- and every variant (EXT-X-STREAM-INF) and I-frame variant (EXT-X-I-FRAME-STREAM-INF)
-- above either limit is dropped from the multivariant playlist. Tokens without these
-- claims play every rendition. Environment: the private bucket's (docs/policies.md).
--
-- This hides renditions from the player; it does not stop a viewer who guesses the URL of
-- a hidden rendition's media playlist (give such renditions their own prefix if needed).
local hg = require("hlsgate")
local util = require("hlsgate.util")
local private_bucket = require("hlsgate.private_bucket")

local SECRET = util.env("HLSGATE_JWT_SECRET")
local stream = util.router({
  { prefix = "/stream/", handler = private_bucket.from_env() },
})

-- The limits carried by the token (already verified by the recipe: this only reads it).
local function limits(token)
  local claims = SECRET and token and hg.jwt.verify(token, SECRET, { alg = "HS256", leeway = 30 })
  if not claims then return nil end
  return tonumber(claims.maxh), tonumber(claims.maxbw) -- 720 or "720"
end

-- true when a variant or I-frame variant exceeds a limit (`uri.attrs` is the tag's parsed
-- attribute list: RESOLUTION, BANDWIDTH, …).
local function too_big(uri, maxh, maxbw)
  if uri.class ~= "playlist" and uri.class ~= "iframe_playlist" then return false end
  local a = uri.attrs
  if a == nil then return false end
  local h = tonumber((a.RESOLUTION or ""):match("^%d+[xX](%d+)$"))
  local bw = tonumber(a.BANDWIDTH)
  return (maxh ~= nil and h ~= nil and h > maxh) or (maxbw ~= nil and bw ~= nil and bw > maxbw)
end

return {
  on_request = function(req)
    local res = stream(req)
    if type(res) == "table" and res.origin then -- a plan: the token was good
      local maxh, maxbw = limits(req.query.token)
      if maxh or maxbw then -- no hook (and no per-URI cost) for unrestricted viewers
        res.on_uri = function(uri)
          if too_big(uri, maxh, maxbw) then return "drop" end
          return nil -- the recipe's rule for this class
        end
      end
    end
    return res
  end,
}
