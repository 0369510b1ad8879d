-- After the run, estimate the share of requests slower than 0.9 s by a
-- binary search over the latency percentiles.
done = function(summary, latency, requests)
  local lo, hi = 0.0, 100.0
  if latency.max <= 900000 then
    lo = 100.0
  else
    for i = 1, 40 do
      local mid = (lo + hi) / 2
      if latency:percentile(mid) <= 900000 then lo = mid else hi = mid end
    end
  end
  io.write(string.format("SLOW_FRACTION %.6f\n", (100.0 - lo) / 100.0))
  io.write(string.format("COMPLETED %d\n", summary.requests))
end
