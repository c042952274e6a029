-- policies/policy.lua — the default hlsgate policy: mounts both shipped recipes.
--
--   /stream/hls/…, /stream/token  private bucket (hlsgate.private_bucket): S3 when
--                                 S3_BUCKET is set, else the local demo directory
--                                 HLSGATE_DEMO_DIR (default var/demo)
--   /proxy?url=…                  open CORS proxy (hlsgate.open_proxy)
--   /watch/                       a page that plays any of the above (hlsgate.watch)
--
-- Configure it with the environment variables of docs/policies.md; copy it to start your
-- own. Reload after editing with `kill -HUP <pid>`.
local util = require("hlsgate.util")
local private_bucket = require("hlsgate.private_bucket")
local open_proxy = require("hlsgate.open_proxy")
local watch = require("hlsgate.watch")

local route = util.router({
  { prefix = "/stream/", handler = private_bucket.from_env() },
  { prefix = "/proxy", handler = open_proxy.from_env() },
  { prefix = "/watch", handler = watch.new() },
})

return {
  on_request = route,
  -- A request a recipe already answered with a reusable plan (same target and scheme, and
  -- for the open proxy Host and Origin, for a stream Origin and any token of the same
  -- prefix that verifies) gets it again without on_request running (docs/policy-api.md,
  -- "Reusing plans"). Remove
  -- this line if you wrap the recipes in checks of anything else (client address, time, …).
  reuse = true,
}
