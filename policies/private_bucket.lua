-- policies/private_bucket.lua — only the private-bucket recipe (the "freeframe" case):
--
--   GET  /stream/hls/{path}?token=T   HLS from a private S3 bucket (S3_BUCKET set), or from
--                                     the local directory HLSGATE_DEMO_DIR (default var/demo)
--   POST /stream/token                mints tokens (Authorization: Bearer $HLSGATE_ADMIN_KEY)
--   POST /stream/revoke               revokes a token on every replica (with HLSGATE_REDIS_URL;
--                                     viewer state: docs/callouts.md)
--
-- Every other path is 404. Configure it with the environment variables of
-- docs/policies.md; run it with `hlsgate --policy policies/private_bucket.lua`.
local util = require("hlsgate.util")
local private_bucket = require("hlsgate.private_bucket")

return {
  on_request = util.router({
    { prefix = "/stream/", handler = private_bucket.from_env() },
  }),
}
