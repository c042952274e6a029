-- policies/open_proxy.lua — only the open CORS proxy recipe (the "m3u8 proxy" case):
--
--   GET /proxy?url=<absolute http(s) URL>   fetched, playlists rewritten to come back
--                                           through /proxy?url=…, CORS headers added
--
-- Every other path is 404. Configure it with the environment variables of
-- docs/policies.md; run it with `hlsgate --policy policies/open_proxy.lua`.
local util = require("hlsgate.util")
local open_proxy = require("hlsgate.open_proxy")

return {
  on_request = util.router({
    { prefix = "/proxy", handler = open_proxy.from_env() },
  }),
  -- A request the recipe already answered (same target, scheme, Host and Origin) gets
  -- the same plan without on_request running (docs/policy-api.md, "Reusing plans").
  -- Remove this line if you add checks of anything else (client address, time, …).
  reuse = true,
}
