-- docs/examples/callouts.lua — the examples of docs/callouts.md, one route each (run by
-- tests/e2e/redis.test.mjs with a real redis-server and HTTP service). Environment:
-- HLSGATE_REDIS_URL, WEATHER_URL.
local hg = require("hlsgate")

local routes = {}

-- hg.redis.call: one command, its reply (nil for a missing key), or nil, err
routes["/count"] = function(req)
  local n, err = hg.redis.call("INCR", "views:" .. (req.query.page or "home"))
  if not n then return hg.error(503, "counter unavailable: " .. err) end
  return hg.json(200, { views = n })
end

-- hg.redis.pipeline: several commands in one round trip
routes["/pipeline"] = function(req)
  local res, err = hg.redis.pipeline({
    { "SET", "greeting", "hello", "EX", 60 },
    { "GET", "greeting" },
    { "GET", "no-such-key" },
    { "HGET", "greeting", "field" }, -- the wrong type: an error reply
  })
  if not res then return hg.error(503, err) end
  return hg.json(200, {
    set = res[1],                   -- "OK"
    get = res[2],                   -- "hello"
    missing = res[3] == hg.null,    -- true
    wrong = res[4].err,             -- "WRONGTYPE Operation against a key …"
  })
end

-- hg.http.request: ask another service, pass its answer on
routes["/weather"] = function(req)
  local res, err = hg.http.request({
    url = os.getenv("WEATHER_URL"),
    headers = { Accept = "application/json" },
    timeout = 1,          -- seconds, the whole exchange
    allow_private = true, -- the service is on this host
  })
  if not res then return hg.error(502, "weather unavailable: " .. err) end
  return hg.response(res.status, res.body, { ["Content-Type"] = res.headers["content-type"] })
end

return {
  on_request = function(req)
    local route = routes[req.path]
    if route then return route(req) end
  end,
}
