import { formatHostPort } from '@airlock/common/config';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import { canonicalAddress } from './destination-check.ts';

/** Where the agent asked to go. */
export interface ProxyTarget {
  readonly host: string;
  readonly port: number;
  /** host[:port] of the URL, normalized (lower case, default port dropped): the Host header sent on (RFC 9112 §3.2.2). */
  readonly authority: string;
  /** Path with query; empty for CONNECT. */
  readonly path: string;
  /** Read inside the agent's TLS, terminated by the sidecar (tls: inspect): `authority` is an https:// one, and it goes on over TLS. */
  readonly inspected?: boolean;
}

function badRequest(reason: string): AirlockError {
  return new AirlockError(ErrorCode.BadRequest, reason);
}

/** What no `host[:port]` holds; refused before a URL parser reads `a@b` as user a at host b, or `a/b` as a path. */
const NOT_IN_AUTHORITY = /[/?#@\\\s]/;

/**
 * Host, port and normalized authority of `host[:port]`, as WHATWG URL reads it; throws when it is
 * none. The host is canonical, as it will be dialled: lower case, IP literals in their one spelling
 * (`2852039166`, `0xA9FEA9FE`, `0251.0376.0251.0376`, `169.254.43518` and `169.254.169.254.` are all
 * 169.254.169.254), and an IPv4-mapped IPv6 address (`[::ffff:169.254.169.254]`) as the IPv4
 * address it reaches.
 */
function readAuthority(text: string, scheme: 'http' | 'https' = 'http'): { host: string; port: number; authority: string } {
  if (text === '' || NOT_IN_AUTHORITY.test(text)) throw new Error('not an authority');
  const url = new URL(`${scheme}://${text}/`);
  const port = url.port === '' ? (scheme === 'https' ? 443 : 80) : Number(url.port);
  // An IPv4-mapped IPv6 literal is the IPv4 address it reaches (canonicalAddress, as the destination check reads it).
  const ip = url.hostname.startsWith('[') ? canonicalAddress(url.hostname) : undefined;
  if (ip?.family === 'ipv4') {
    return { host: ip.address, port, authority: url.port === '' ? ip.address : `${ip.address}:${url.port}` };
  }
  return { host: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname, port, authority: url.host };
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
  assertUnambiguousTarget(target);
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
  if (named.port === 0) throw badRequest('port 0 is not a destination');
  const path = rawPath === '' ? '/' : rawPath.startsWith('?') ? `/${rawPath}` : rawPath;
  return { host: named.host, port: named.port, authority: named.authority, path };
}

/** Parsers disagree on a backslash (WHATWG URL reads it as "/", others as data) and on "#": refused in any request target. */
function assertUnambiguousTarget(target: string): void {
  if (target.includes('\\')) throw badRequest('the request target contains a backslash');
  if (target.includes('#')) throw badRequest('the request target contains a fragment ("#")');
}

/**
 * An origin-form request captured in transparent mode (`GET /v1/search` with `Host: researcher.demo`).
 * Node cannot read the connection's original destination (SO_ORIGINAL_DST), so the Host names it,
 * read as an absolute-form URL's authority is (canonical IP literals, default port 80), and that
 * host is what is judged and dialled: an agent that connected to one address with a Host naming
 * another reaches only what the Host names, and only if the policy allows it. No Host, no call.
 * The path is kept exactly as sent, as parseAbsoluteTarget keeps it.
 */
export function parseOriginTarget(requestTarget: string | undefined, hostHeader: string | undefined): ProxyTarget {
  const path = requestTarget ?? '';
  if (!path.startsWith('/')) throw badRequest('a captured request must be origin-form (GET /path) or absolute-form (GET http://host/path)');
  assertUnambiguousTarget(path);
  if (hostHeader === undefined) throw badRequest('a captured request is routed by its Host header, and it has none');
  let named: { host: string; port: number; authority: string };
  try {
    named = readAuthority(hostHeader.trim());
  } catch {
    throw badRequest(`bad Host header: ${hostHeader.slice(0, 200)}`);
  }
  if (named.authority === '' || named.port === 0) throw badRequest(`bad Host header: ${hostHeader.slice(0, 200)}`);
  return { ...named, path };
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
    named = readAuthority(hostHeader.trim(), target.inspected === true ? 'https' : 'http');
  } catch {
    throw badRequest(`bad Host header: ${hostHeader.slice(0, 200)}`);
  }
  if (named.host !== target.host.toLowerCase() || named.port !== target.port) {
    throw badRequest(`the Host header (${hostHeader.slice(0, 200)}) names another authority than the URL (${target.authority}); they must agree`);
  }
}

/**
 * A CONNECT request target (`api.example.com:443`), read as an absolute-form URL's authority is,
 * so the decision judges the canonical host that is then dialled (`2852039166:80` is
 * 169.254.169.254, not a name).
 */
export function parseAuthorityTarget(requestTarget: string | undefined): ProxyTarget {
  const target = requestTarget ?? '';
  try {
    // RFC 9110 §9.3.6: a CONNECT names the port; there is no default to fall back on.
    if (!/:\d{1,5}$/.test(target)) throw new Error(`no port in "${target.slice(0, 200)}"`);
    let named: { host: string; port: number };
    try {
      named = readAuthority(target);
    } catch {
      throw new Error(`not a valid host:port: "${target.slice(0, 200)}"`);
    }
    if (named.port === 0) throw new Error('port 0 is not a destination');
    return { host: named.host, port: named.port, authority: formatHostPort(named), path: '' };
  } catch (err) {
    throw badRequest(`CONNECT needs host:port: ${errorMessage(err)}`);
  }
}

/**
 * The destination of the requests inside a CONNECT whose TLS the sidecar terminated: the CONNECT
 * authority as an https:// URL names it (`api.example.com`, `api.example.com:8443`), which is the
 * Host its requests carry and are sent on with.
 */
export function inspectedTarget(connect: ProxyTarget): ProxyTarget {
  const named = readAuthority(formatHostPort(connect), 'https');
  return { host: connect.host, port: connect.port, authority: named.authority, path: '', inspected: true };
}
