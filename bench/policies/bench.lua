-- bench/policies/bench.lua — the policy bench/run.sh runs hlsgate with. It mounts the
-- shipped recipes (lua/hlsgate/*.lua) unchanged, configured by the same environment
-- variables as policies/policy.lua (SPEC §9), and adds two variants for measurement:
--
--   /stream/hls/…?token=T    private bucket (S3_BUCKET, S3_ENDPOINT, … from run.sh), with
--                            the raw upstream playlist cached BENCH_PLAYLIST_CACHE_TTL
--                            seconds (default 60): token check + cached S3 playlist +
--                            rewrite (presign per segment, proxy per variant)
--   /uncached/hls/…?token=T  the same recipe as shipped (cache_ttl 0): every request also
--                            makes a SigV4 header-signed GET to the S3 endpoint
--   /proxy?url=U             open CORS proxy exactly as shipped (HLSGATE_CACHE_TTL, 300 s)
--   /relay?url=U             the open proxy with cache_ttl 0: every segment streamed from
--                            the origin (what nginx proxy_pass does)
local util = require("hlsgate.util")
local private_bucket = require("hlsgate.private_bucket")
local open_proxy = require("hlsgate.open_proxy")

local ttl = util.env_number("BENCH_PLAYLIST_CACHE_TTL", 60, 0)

local route = util.router({
  { prefix = "/stream/", handler = private_bucket.from_env({ cache_ttl = ttl }) },
  { prefix = "/uncached/", handler = private_bucket.from_env({
      mount = "/uncached/hls/", token_path = "/uncached/token", cache_ttl = 0 }) },
  { prefix = "/proxy", handler = open_proxy.from_env() },
  { prefix = "/relay", handler = open_proxy.from_env({ path = "/relay", cache_ttl = 0 }) },
})

return { on_request = route }
