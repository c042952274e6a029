-- wrk_report.lua — wrk -s script of bench/run.sh: prints one machine-readable line after
-- the run (requests, bytes, duration, errors — a non-2xx/3xx answer counts in status —
-- and latency percentiles).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d bytes=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99)))
end
