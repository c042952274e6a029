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
  local paths = {}
  for line in io.lines(file) do paths[#paths + 1] = line end
  math.randomseed(os.time(), math.floor(os.clock() * 1e6))
  local i = math.random(#paths)
  request = function()
    i = i % #paths + 1
    return wrk.format("GET", paths[i])
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d bytes=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99)))
end
