-- bench/policies/bench.lua — the policy bench/run.sh runs hlsgate with. It mounts the
-- shipped recipes (lua/hlsgate/*.lua) unchanged, configured by the same environment
-- variables as policies/policy.lua (SPEC §9), plus two variants for measurement:
--
--   /stream/hls/…?token=T    private bucket exactly as shipped (S3_BUCKET, S3_ENDPOINT, …
--                            from run.sh; HLSGATE_PLAYLIST_CACHE_TTL default): token check,
--                            S3 playlist (cached briefly), rewrite (segments presigned,
--                            variants proxied), rewritten output cached per token
--   /uncached/hls/…?token=T  the same recipe with cache_ttl 0: every request makes a SigV4
--                            header-signed GET to the S3 endpoint and rewrites
--   /proxy?url=U             open CORS proxy exactly as shipped (HLSGATE_CACHE_TTL, 300 s)
--   /relay?url=U             the open proxy with cache_ttl 0: every playlist fetched and
--                            rewritten, every segment streamed from the origin (what nginx
--                            proxy_pass and hls-proxy do)
local util = require("hlsgate.util")
local private_bucket = require("hlsgate.private_bucket")
local open_proxy = require("hlsgate.open_proxy")

local route = util.router({
  { prefix = "/stream/", handler = private_bucket.from_env() },
  { prefix = "/uncached/", handler = private_bucket.from_env({
      mount = "/uncached/hls/", token_path = "/uncached/token", cache_ttl = 0 }) },
  { prefix = "/proxy", handler = open_proxy.from_env() },
  { prefix = "/relay", handler = open_proxy.from_env({ path = "/relay", cache_ttl = 0 }) },
})

return { on_request = route, reuse = true } -- as policies/policy.lua
