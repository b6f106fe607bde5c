import { parseHostPort } from '@airlock/common/config';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';

/** Where the agent asked to go. */
export interface ProxyTarget {
  readonly host: string;
  readonly port: number;
  /** host[:port] of the URL, normalized (lower case, default port dropped): the Host header sent on (RFC 9112 §3.2.2). */
  readonly authority: string;
  /** Path with query; empty for CONNECT. */
  readonly path: string;
}

function badRequest(reason: string): AirlockError {
  return new AirlockError(ErrorCode.BadRequest, reason);
}

/** Host, port and normalized authority of `host[:port]`, as WHATWG URL reads it; throws when it is none. */
function readAuthority(text: string): { host: string; port: number; authority: string } {
  const url = new URL(`http://${text}/`);
  return { host: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname, port: url.port === '' ? 80 : Number(url.port), authority: url.host };
}

/**
 * An absolute-form request target (`http://researcher.demo/v1/search?q=x`), as a forward proxy
 * receives it. The path is kept exactly as sent (not resolved by a URL parser, which would turn
 * `/a/../b` into `/b` and `\` into `/`): the control plane normalizes it once and refuses the
 * ambiguous, and the very bytes it judged are what the destination receives.
 */
export function parseAbsoluteTarget(requestTarget: string | undefined): ProxyTarget {
  const target = requestTarget ?? '';
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(target);
  if (scheme === null) {
    throw badRequest('this is an HTTP proxy: send the absolute URL (GET http://host/path) or set HTTP_PROXY; origin-form requests are not proxied');
  }
  if ((scheme[1] ?? '').toLowerCase() !== 'http') {
    throw badRequest(`only http:// URLs are proxied (got ${scheme[1] ?? ''}:); use CONNECT for https to external hosts, plain http:// for mesh hosts`);
  }
  // Parsers disagree on a backslash (WHATWG URL reads it as "/", others as data) and on "#".
  if (target.includes('\\')) throw badRequest('the request target contains a backslash');
  if (target.includes('#')) throw badRequest('the request target contains a fragment ("#")');
  const rest = target.slice(scheme[0].length);
  const end = rest.search(/[/?]/);
  const rawAuthority = end === -1 ? rest : rest.slice(0, end);
  const rawPath = end === -1 ? '' : rest.slice(end);
  if (rawAuthority.includes('@')) throw badRequest('credentials in the URL are not accepted');
  let named: { host: string; port: number; authority: string };
  try {
    named = readAuthority(rawAuthority);
  } catch {
    throw badRequest(`not a valid URL: ${target.slice(0, 200)}`);
  }
  if (named.authority === '') throw badRequest('the URL names no host');
  const path = rawPath === '' ? '/' : rawPath.startsWith('?') ? `/${rawPath}` : rawPath;
  return { host: named.host, port: named.port, authority: named.authority, path };
}

/**
 * The absolute-form URL names where the call goes (RFC 9112 §3.2.2: a proxy ignores Host), and is
 * what is authorized and sent on as Host. A Host header naming another authority is refused rather
 * than silently replaced: some component behind the agent meant the other one.
 */
export function assertHostMatches(target: ProxyTarget, hostHeader: string | undefined): void {
  // The usual case (curl -x, HTTP_PROXY clients): the Host is the URL's authority as written; nothing to parse.
  if (hostHeader === undefined || hostHeader === target.authority) return;
  let named: { host: string; port: number };
  try {
    if (!/^[^/?#@\\\s]+$/.test(hostHeader.trim())) throw new Error('not an authority');
    named = readAuthority(hostHeader.trim());
  } catch {
    throw badRequest(`bad Host header: ${hostHeader.slice(0, 200)}`);
  }
  if (named.host !== target.host.toLowerCase() || named.port !== target.port) {
    throw badRequest(`the Host header (${hostHeader.slice(0, 200)}) names another authority than the URL (${target.authority}); they must agree`);
  }
}

/** A CONNECT request target (`api.example.com:443`). */
export function parseAuthorityTarget(requestTarget: string | undefined): ProxyTarget {
  try {
    const { host, port } = parseHostPort(requestTarget ?? '');
    if (port === 0) throw new Error('port 0 is not a destination');
    return { host: host.toLowerCase(), port, authority: requestTarget ?? '', path: '' };
  } catch (err) {
    throw badRequest(`CONNECT needs host:port: ${errorMessage(err)}`);
  }
}
