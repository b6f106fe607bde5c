-- wrk posting one MCP tools/call (JSON-RPC 2.0, Streamable HTTP) per request, each with its own id.
-- AIRLOCK_BENCH_TARGET: an absolute-form URL (through the sidecar as an HTTP proxy) or a path (direct);
-- AIRLOCK_BENCH_BODY: the JSON-RPC request, with "id":0 replaced per request;
-- AIRLOCK_BENCH_CONTENT_TYPE: application/json (default), or another type the sidecars do not read.
-- A JSON-RPC error answered with HTTP 200 (how Airlock refuses MCP calls) is counted and printed as
-- "JSON-RPC errors: N", which bench/wrk-output.ts adds to the errors.
local target = os.getenv("AIRLOCK_BENCH_TARGET")
local body = os.getenv("AIRLOCK_BENCH_BODY")
local headers = {
  ["Host"] = "researcher.bench",
  ["Content-Type"] = os.getenv("AIRLOCK_BENCH_CONTENT_TYPE") or "application/json",
  ["Accept"] = "application/json, text/event-stream",
}
local threads = {}
local n = 0
rpc_errors = 0

function setup(thread)
  table.insert(threads, thread)
end

request = function()
  n = n + 1
  return wrk.format("POST", target, headers, (body:gsub('"id":0', '"id":' .. n, 1)))
end

response = function(status, hdrs, resp)
  if status == 200 and resp:find('"error":', 1, true) then
    rpc_errors = rpc_errors + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do
    total = total + t:get("rpc_errors")
  end
  io.write(string.format("JSON-RPC errors: %d\n", total))
end
