import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { connectionNamed, hasUnderscore, isHopByHop } from '@airlock/common/headers';
import { TICKET_HEADER } from '@airlock/common/ticket';

export const XFCC = 'x-forwarded-client-cert';

/**
 * Headers of a request to pass on: hop-by-hop headers removed, any `x-forwarded-client-cert`
 * removed, since only a sidecar may vouch for a caller (inbound sets its own after the handshake),
 * any `airlock-ticket` removed (only the egress sidecar sets one, for the peer sidecar alone), and any name with a `_` (`x_forwarded_client_cert` reads as XFCC to CGI/WSGI apps; see hasUnderscore).
 */
export function requestHeadersToForward(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const named = connectionNamed(headers.connection);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name === XFCC || name === TICKET_HEADER || isHopByHop(name, named) || hasUnderscore(name)) continue;
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

/**
 * The request's Host header (from `rawHeaders`: every occurrence as received); undefined when an
 * HTTP/1.0 request has none. More than one is refused (RFC 9112 §3.2): Node keeps the first and
 * drops the rest, while a server behind the sidecar may read the last, so the two could name
 * different hosts. So is none in HTTP/1.1 (the servers leave that check to this function, so the
 * answer has a JSON body like every other).
 */
export function singleHostHeader(req: Pick<IncomingMessage, 'rawHeaders' | 'httpVersion'>): string | undefined {
  let host: string | undefined;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] ?? '';
    if (name.length !== 4 || name.toLowerCase() !== 'host') continue;
    if (host !== undefined) throw new AirlockError(ErrorCode.BadRequest, 'more than one Host header (RFC 9112 §3.2)');
    host = raw[i + 1] ?? '';
  }
  if (host === undefined && req.httpVersion !== '1.0') throw new AirlockError(ErrorCode.BadRequest, 'missing Host header (RFC 9112 §3.2)');
  return host;
}
