import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

export const XFCC = 'x-forwarded-client-cert';

// Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection and are never forwarded. `expect`
// is answered by this hop (Node sends 100 Continue), so it is not forwarded either.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect']);

function isHopByHop(name: string, named: ReadonlySet<string>): boolean {
  return HOP_BY_HOP.has(name) || name.startsWith('proxy-') || named.has(name);
}

const NONE: ReadonlySet<string> = new Set();

/** Header names listed in `Connection: a, b` are hop-by-hop for this message too. */
function connectionNamed(connection: string | string[] | number | undefined): ReadonlySet<string> {
  if (connection === undefined || typeof connection === 'number') return NONE;
  const text = Array.isArray(connection) ? connection.join(',') : connection;
  return new Set(text.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== ''));
}

/**
 * Headers of a request to pass on: hop-by-hop headers removed, and any `x-forwarded-client-cert`
 * removed, since only a sidecar may vouch for a caller (inbound sets its own after the handshake).
 */
export function requestHeadersToForward(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const named = connectionNamed(headers.connection);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name === XFCC || isHopByHop(name, named)) continue;
    out[name] = value;
  }
  return out;
}

/** Headers of an upstream response to pass back: hop-by-hop headers removed. */
export function responseHeadersToForward(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = connectionNamed(headers.connection);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || isHopByHop(name, named)) continue;
    out[name] = value;
  }
  return out;
}
