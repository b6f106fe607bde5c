// Reads wrk's report (`wrk --latency`): shared by every bench that drives wrk.

export interface WrkResult {
  readonly rps: number;
  readonly p50ms: number;
  readonly p99ms: number;
  /** Non-2xx/3xx answers, socket errors (connect, read, write, timeout) and JSON-RPC errors (bench/wrk-mcp.lua). */
  readonly errors: number;
  /** Requests completed over the run (`N requests in …`). */
  readonly requests: number;
}

/** `52.10us`, `1.20ms`, `2.00s` → milliseconds (NaN if it is none of these). */
function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v.trim());
  if (m === null) return NaN;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2] as 'us' | 'ms' | 's'];
}

export function parseWrkOutput(stdout: string): WrkResult {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]);
  const p50 = /\s50%\s+([\d.]+\w+)/.exec(stdout)?.[1] ?? '';
  const p99 = /\s99%\s+([\d.]+\w+)/.exec(stdout)?.[1] ?? '';
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0);
  const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  // An MCP refusal is HTTP 200 with a JSON-RPC error: bench/wrk-mcp.lua counts those.
  const rpcErrors = Number(/JSON-RPC errors: (\d+)/.exec(stdout)?.[1] ?? 0);
  const errors = non2xx + rpcErrors + (sockErr === null ? 0 : sockErr.slice(1).reduce((a, b) => a + Number(b), 0));
  const requests = Number(/(\d+) requests in /.exec(stdout)?.[1]);
  return { rps, p50ms: toMs(p50), p99ms: toMs(p99), errors, requests };
}
