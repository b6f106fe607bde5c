/**
 * Which request headers a sidecar sends with an Authorize request, shared by the sidecar (which
 * selects them) and the control plane (which refuses rules on headers never sent, and requests
 * over the bounds).
 */

/** At most this many header occurrences are sent per request. */
export const MAX_AUTHZ_HEADERS = 32;
/** At most this many bytes of names and values (UTF-8) are sent per request. */
export const MAX_AUTHZ_HEADER_BYTES = 8192;

/**
 * Never sent: secrets (credentials must not reach the control plane or its audit log), headers of
 * one hop, the Host (judged as the destination), and the identity header only sidecars set.
 */
const UNSENT: ReadonlySet<string> = new Set([
  'authorization', 'cookie', 'proxy-authorization', 'host', 'x-forwarded-client-cert',
  'connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect',
]);

/** True for a (lower-case) header name that is never sent to the control plane. */
export function isUnsentHeader(name: string): boolean {
  return UNSENT.has(name) || name.startsWith('proxy-');
}
