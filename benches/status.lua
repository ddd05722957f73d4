-- wrk script for benches/run.sh: GET /status with a JSON body (GET requests of the
-- interLink contract carry a body). The body is read from the file named by the
-- environment variable STATUS_BODY_FILE; without it the body is "[]" (the ping).
-- wrk adds Host and Content-Length itself and speaks HTTP/1.1 with keep-alive.
--
--   STATUS_BODY_FILE=pod.json wrk -t2 -c16 -d10s --latency -s benches/status.lua http://127.0.0.1:PORT/status

local body = "[]"
local file = os.getenv("STATUS_BODY_FILE")
if file and file ~= "" then
   local f = assert(io.open(file, "rb"))
   body = f:read("*a")
   f:close()
end

wrk.method = "GET"
wrk.path = "/status"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["InterLink-Http-Session"] = "bench"

-- One machine-readable line for run.sh (latency in microseconds).
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "WRK_RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d max_us=%d " ..
      "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
      summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(99), latency.max,
      e.connect, e.read, e.write, e.status, e.timeout))
end
