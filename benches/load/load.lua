-- wrk script of the end-to-end load benchmark (benches/load/run.sh).
--
--   wrk ... -s load.lua URL -- CAP [PAYLOADS]
--
-- CAP bounds the requests of each wrk thread (a safety bound: set above what
-- the run can reach, since wrk still reports over its full -d duration).
-- PAYLOADS, when given, is a file of x402 PAYMENT-SIGNATURE values, one per
-- line: each request carries the next one (every payment is used once; once
-- the file is exhausted the last one is replayed, which the server refuses
-- and wrk counts as a non-2xx answer). Without it, every request is the
-- same (with the -H headers given to wrk).
--
-- done() prints one line the script parses:
--   RESULT requests=N duration_us=D rps=R p50_us=P p99_us=Q non2xx=S errors=E

local cap = 0
local sent = 0
local fixed = nil
local payloads = nil
local count = 0

function init(args)
   cap = tonumber(args[1]) or 1000000
   if args[2] then
      payloads = {}
      for line in io.lines(args[2]) do
         count = count + 1
         payloads[count] = line
      end
   else
      fixed = wrk.format()
   end
end

function request()
   sent = sent + 1
   if sent >= cap then
      wrk.thread:stop()
   end
   if fixed then
      return fixed
   end
   local i = sent
   if i > count then
      i = count
   end
   wrk.headers["PAYMENT-SIGNATURE"] = payloads[i]
   return wrk.format(nil, nil, wrk.headers)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d non2xx=%d errors=%d\n",
      summary.requests, summary.duration,
      summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(99),
      e.status, e.connect + e.read + e.write + e.timeout))
end
