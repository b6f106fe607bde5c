import { AirlockError, ErrorCode } from '@airlock/common/errors';

/**
 * How long the sidecar waits on what it calls (external hosts and peer sidecars alike): settings
 * upstreamConnectTimeout, upstreamHeadersTimeout, upstreamBodyTimeout. A destination that never
 * answers holds an agent's call (and a connection) for these at most.
 */
export interface UpstreamTimeouts {
  /** Dialling one address, then the TLS handshake when the sidecar speaks TLS (each, not together). */
  readonly connectMs: number;
  /** From the request sent to the response's headers. */
  readonly headersMs: number;
  /** Between two reads of the response body: an idle timer, so an answer that keeps trickling is relayed as long as it lasts. */
  readonly bodyMs: number;
}

/**
 * The defaults: 10 s to dial or finish a handshake (a reachable host does it in well under a
 * second); 5 min for headers, as a non-streaming LLM completion (a reasoning model) answers only when
 * it is done; 5 min of silence inside a body, longer than a streamed answer pauses between tokens.
 */
export const DEFAULT_UPSTREAM_TIMEOUTS: UpstreamTimeouts = { connectMs: 10_000, headersMs: 300_000, bodyMs: 300_000 };

/** undici's dispatcher options for `t` (an Agent, a Pool). */
export function undiciTimeouts(t: UpstreamTimeouts): { headersTimeout: number; bodyTimeout: number } {
  return { headersTimeout: t.headersMs, bodyTimeout: t.bodyMs };
}

/** undici's error codes of its timeouts, and the setting each one is. */
const UNDICI_TIMEOUTS: Readonly<Record<string, string>> = {
  UND_ERR_CONNECT_TIMEOUT: 'no connection within upstreamConnectTimeout',
  UND_ERR_HEADERS_TIMEOUT: 'no response headers within upstreamHeadersTimeout',
  UND_ERR_BODY_TIMEOUT: 'no response body bytes within upstreamBodyTimeout',
};

/** One of undici's timeouts as AIRLOCK_UPSTREAM_TIMEOUT (a 504 naming the setting), or undefined for any other error. */
export function upstreamTimeoutError(err: Error, describe: string): AirlockError | undefined {
  const what = UNDICI_TIMEOUTS[(err as NodeJS.ErrnoException).code ?? ''];
  return what === undefined ? undefined : new AirlockError(ErrorCode.UpstreamTimeout, `${describe}: ${what}`, { cause: err });
}
