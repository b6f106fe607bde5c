/**
 * Which request headers a sidecar sends with an Authorize request, shared by the sidecar (which
 * selects them) and the control plane (which refuses rules on headers never sent, and requests
 * over the bounds).
 */
import { TICKET_HEADER } from './ticket.ts';

/** At most this many header occurrences are sent per request. */
export const MAX_AUTHZ_HEADERS = 32;
/** At most this many bytes of names and values (UTF-8) are sent per request. */
export const MAX_AUTHZ_HEADER_BYTES = 8192;
/**
 * At most this many checks go in one AuthorizeStream message: the sidecar splits larger batches,
 * and the control plane refuses a message over it without deciding any of its checks.
 */
export const MAX_AUTHZ_CHECKS_PER_MESSAGE = 512;

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection: never forwarded, never judged.
 * `expect` is answered by the hop itself (Node sends 100 Continue). `proxy-*` are too (isHopByHop).
 */
const HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect']);

/** True for a lower-case name that is hop-by-hop by itself or named by the message's Connection header. */
export function isHopByHop(name: string, connectionNamed: ReadonlySet<string>): boolean {
  return HOP_BY_HOP.has(name) || name.startsWith('proxy-') || connectionNamed.has(name);
}

const NONE: ReadonlySet<string> = new Set();

/** The header names a `Connection: a, b` header lists (lower-case): hop-by-hop for this message too. */
export function connectionNamed(connection: string | readonly string[] | number | undefined): ReadonlySet<string> {
  if (connection === undefined || typeof connection === 'number') return NONE;
  const text = typeof connection === 'string' ? connection : connection.join(',');
  if (text === '') return NONE;
  return new Set(text.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== ''));
}

/**
 * Never sent besides hop-by-hop headers: secrets (credentials must not reach the control plane or
 * its audit log), the Host (judged as the destination), the identity header only sidecars set, and
 * the ticket header only the egress sidecar sets (ticket.ts).
 */
const UNSENT: ReadonlySet<string> = new Set(['authorization', 'cookie', 'host', 'x-forwarded-client-cert', TICKET_HEADER]);

/**
 * A request header whose name has a `_` is dropped by both sidecars: never judged, never forwarded
 * (as nginx does by default, `underscores_in_headers off`). CGI/WSGI servers and several frameworks
 * read `x_forwarded_client_cert` and `x-forwarded-client-cert` as the same variable, so such a name
 * could pass for a header the sidecar sets, or one a rule judges.
 */
export function hasUnderscore(name: string): boolean {
  return name.includes('_');
}

/** True for a (lower-case) header name that is never sent to the control plane. */
export function isUnsentHeader(name: string, connectionNamedHeaders: ReadonlySet<string> = NONE): boolean {
  return UNSENT.has(name) || isHopByHop(name, connectionNamedHeaders) || hasUnderscore(name);
}
