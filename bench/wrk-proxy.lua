-- wrk sends the request target as given: an absolute-form URL makes it an HTTP-proxy request, the
-- way an agent with HTTP_PROXY calls through its sidecar.
local target = os.getenv("AIRLOCK_BENCH_TARGET")
request = function()
  return wrk.format("GET", target, { ["Host"] = "researcher.bench" })
end
