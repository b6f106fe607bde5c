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

/** An absolute-form request target (`http://researcher.demo/v1/search?q=x`), as a forward proxy receives it. */
export function parseAbsoluteTarget(requestTarget: string | undefined): ProxyTarget {
  const target = requestTarget ?? '';
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) {
    throw badRequest('this is an HTTP proxy: send the absolute URL (GET http://host/path) or set HTTP_PROXY; origin-form requests are not proxied');
  }
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    throw badRequest(`not a valid URL: ${target.slice(0, 200)}`);
  }
  if (url.protocol !== 'http:') {
    throw badRequest(`only http:// URLs are proxied (got ${url.protocol}); use CONNECT for https to external hosts, plain http:// for mesh hosts`);
  }
  if (url.username !== '' || url.password !== '') throw badRequest('credentials in the URL are not accepted');
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { host, port: url.port === '' ? 80 : Number(url.port), authority: url.host, path: `${url.pathname}${url.search}` };
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
