-- bench/policies/redis.lua — the callout scenario of bench/redis.sh: the same tiny policy
-- with and without one Redis GET per request (hg.redis.call, a non-blocking callout).
--   /plain   answers a constant
--   /redis   answers the value of the key bench:key, read from Redis on every request
local hg = require("hlsgate")

return {
  on_request = function(req)
    if req.path == "/redis" then
      local v, err = hg.redis.call("GET", "bench:key")
      if err then return hg.error(503, err) end
      return hg.response(200, v or "none")
    end
    if req.path == "/plain" then
      local v = "value"
      return hg.response(200, v)
    end
  end,
}
