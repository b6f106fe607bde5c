import { describe, expect, it } from 'vitest';
import { parseWrkOutput } from './wrk-output.ts';

// wrk 4.1's report with --latency, as bench/wrk-mcp.lua's done() ends it.
const REPORT = `Running 5s test @ http://127.0.0.1:40001/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     7.61ms    3.02ms  41.20ms   80.11%
    Req/Sec     2.11k   210.33     2.50k    70.00%
  Latency Distribution
     50%  812.00us
     75%    8.91ms
     90%   10.02ms
     99%    1.21s
  10512 requests in 5.01s, 2.55MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   2098.20
Transfer/sec:    521.40KB
JSON-RPC errors: 5
`;

describe('parseWrkOutput', () => {
  it('reads req/s, p50 and p99 in every unit, the request count, and every kind of error', () => {
    expect(parseWrkOutput(REPORT)).toEqual({ rps: 2098.2, p50ms: 0.812, p99ms: 1210, requests: 10512, errors: 2 + 1 + 4 + 5 });
  });

  it('counts no errors when wrk reports none', () => {
    const clean = REPORT.replace(/ {2}Socket errors.*\n/, '').replace(/ {2}Non-2xx.*\n/, '').replace('JSON-RPC errors: 5', 'JSON-RPC errors: 0');
    expect(parseWrkOutput(clean).errors).toBe(0);
  });

  it('gives NaN, not a plausible figure, for a report it cannot read', () => {
    const r = parseWrkOutput('unable to connect to 127.0.0.1:1 Connection refused\n');
    expect(r.rps).toBeNaN();
    expect(r.p50ms).toBeNaN();
    expect(r.requests).toBeNaN();
  });
});
