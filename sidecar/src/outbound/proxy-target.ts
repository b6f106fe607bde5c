import { parseHostPort } from '@airlock/common/config';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';

/** Where the agent asked to go. */
export interface ProxyTarget {
  readonly host: string;
  readonly port: number;
  /** host[:port] as the agent wrote it in the URL: the Host header sent on (RFC 9112 §3.2.2). */
  readonly authority: string;
  /** Path with query; empty for CONNECT. */
  readonly path: string;
}

function badRequest(reason: string): AirlockError {
  return new AirlockError(ErrorCode.BadRequest, reason);
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
  let url: URL;
  try {
    url = new URL(`http://${rawAuthority}/`);
  } catch {
    throw badRequest(`not a valid URL: ${target.slice(0, 200)}`);
  }
  if (url.host === '') throw badRequest('the URL names no host');
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const path = rawPath === '' ? '/' : rawPath.startsWith('?') ? `/${rawPath}` : rawPath;
  return { host, port: url.port === '' ? 80 : Number(url.port), authority: url.host, path };
}

/**
 * The absolute-form URL names where the call goes (RFC 9112 §3.2.2: a proxy ignores Host), and is
 * what is authorized and sent on as Host. A Host header naming another authority is refused rather
 * than silently replaced: some component behind the agent meant the other one.
 */
export function assertHostMatches(target: ProxyTarget, hostHeader: string | undefined): void {
  if (hostHeader === undefined) return;
  let named: { host: string; port: number };
  try {
    if (!/^[^/?#@\\\s]+$/.test(hostHeader.trim())) throw new Error('not an authority');
    const u = new URL(`http://${hostHeader.trim()}/`);
    named = { host: u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname, port: u.port === '' ? 80 : Number(u.port) };
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
