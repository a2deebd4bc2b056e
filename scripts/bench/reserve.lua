-- wrk: POST /reserve for BENCH_EVENT, each request a new buyer (a user_id
-- of its thread and count), as `just bench` measures the accept path.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local event = os.getenv("BENCH_EVENT") or "bench-open"
local threads = 0
local sent = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function request()
  sent = sent + 1
  local body = string.format('{"event_id":"%s","user_id":"w%d-%d"}', event, tid, sent)
  return wrk.format(nil, "/reserve", nil, body)
end
