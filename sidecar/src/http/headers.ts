import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { connectionNamed, isHopByHop } from '@airlock/common/headers';

export const XFCC = 'x-forwarded-client-cert';

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
