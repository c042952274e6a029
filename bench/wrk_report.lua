-- wrk_report.lua — wrk -s script of bench/run.sh.
--
-- With BENCH_PATHS=FILE (one request path per line) each request takes the next path,
-- from a random start: bench/run.sh uses it to give every request its own viewer token,
-- so that no answer can come from hlsgate's per-token output cache.
--
-- After the run it prints one machine-readable line: requests, bytes, duration, errors
-- (a non-2xx/3xx answer counts in status) and latency percentiles.
local file = os.getenv("BENCH_PATHS")
if file and file ~= "" then
  -- Read as it goes, never held in a table: a table of 200,000 strings makes LuaJIT's
  -- collector walk them all again and again, and wrk itself became the bottleneck
  -- (6,500 req/s with 200,000 paths, 72,000 with 2,000, whatever the server).
  local f = assert(io.open(file))
  local size = f:seek("end")
  math.randomseed(os.time(), math.floor(os.clock() * 1e6))
  f:seek("set", math.random(0, size - 1))
  f:read("*l") -- the rest of the line we landed in
  request = function()
    local path = f:read("*l")
    if not path then
      f:seek("set", 0)
      path = f:read("*l")
    end
    return wrk.format("GET", path)
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d bytes=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99)))
end
