import { readFileSync } from 'node:fs';
import type { PeerCertificate } from 'node:tls';
import { Agent, request } from 'undici';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import { isControlPlaneId, spiffeIdFromSubjectAltName } from '@airlock/common/spiffe';
import { isLoopbackHost } from '@airlock/control-plane/config';
import type { AdminCredentials } from './credentials.ts';

/**
 * With the control plane's trust bundle, its admin API is recognized as sidecars recognize its gRPC
 * endpoint: by the SPIFFE ID in its certificate (the chain is checked by TLS against the bundle),
 * not by a host name (the certificate names only localhost and 127.0.0.1).
 */
export function controlPlaneIdentityCheck(serverId: string | undefined): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    const expected = serverId ?? 'spiffe://<trust domain>/ns/airlock-system/sa/airlock-control-plane';
    try {
      const id = spiffeIdFromSubjectAltName(cert.subjectaltname);
      const ok = serverId !== undefined ? id.uri === serverId : isControlPlaneId(id);
      return ok ? undefined : new Error(`the server presented ${id.uri}, expected ${expected}`);
    } catch (err) {
      return new Error(`the server's certificate is not the X.509-SVID of ${expected}: ${errorMessage(err)}`);
    }
  };
}

/** Calls the control plane's admin JSON API and turns its error bodies into typed errors. */
export function adminPost(creds: AdminCredentials, path: string, body: unknown): Promise<unknown> {
  return adminRequest(creds, 'POST', path, body);
}

export function adminGet(creds: AdminCredentials, path: string): Promise<unknown> {
  return adminRequest(creds, 'GET', path, undefined);
}

export function adminDelete(creds: AdminCredentials, path: string): Promise<unknown> {
  return adminRequest(creds, 'DELETE', path, undefined);
}

/**
 * The admin token is a bearer credential: it is sent in clear text only to this machine, or when
 * AIRLOCK_INSECURE_PLAIN_HTTP=1 says a TLS-terminating proxy is in between.
 */
function refusePlainHttpOffThisMachine(server: string): void {
  const url = new URL(server);
  if (url.protocol !== 'http:' || isLoopbackHost(url.hostname.replace(/^\[|\]$/g, '')) || process.env.AIRLOCK_INSECURE_PLAIN_HTTP === '1') return;
  throw new AirlockError(ErrorCode.Config, `refusing to send the admin token in clear text to ${url.origin}: use https:// (the admin API serves TLS on :15013), or set AIRLOCK_INSECURE_PLAIN_HTTP=1 when a TLS-terminating proxy is in between`);
}

async function adminRequest(creds: AdminCredentials, method: 'GET' | 'POST' | 'DELETE', path: string, body: unknown): Promise<unknown> {
  refusePlainHttpOffThisMachine(creds.server);
  // Never `rejectUnauthorized: false`: without a CA bundle, the system's CAs and the host name decide.
  const dispatcher = creds.caFile === undefined ? undefined : new Agent({ connect: { ca: readCaFile(creds.caFile), checkServerIdentity: controlPlaneIdentityCheck(creds.serverId) } });
  try {
    return await send(creds, dispatcher, method, path, body);
  } finally {
    await dispatcher?.close();
  }
}

async function send(creds: AdminCredentials, dispatcher: Agent | undefined, method: 'GET' | 'POST' | 'DELETE', path: string, body: unknown): Promise<unknown> {
  let res;
  try {
    res = await request(new URL(path, creds.server), {
      method,
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), authorization: `Bearer ${creds.token}` },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      ...(dispatcher === undefined ? {} : { dispatcher }),
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
  } catch (err) {
    throw new AirlockError(ErrorCode.AuthzUnavailable, `cannot reach the control plane at ${creds.server}: ${describe(err)}`);
  }
  const text = await res.body.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (res.statusCode >= 200 && res.statusCode < 300) return parsed;
  const reason = (parsed as { reason?: unknown } | undefined)?.reason;
  const why = typeof reason === 'string' ? reason : text.slice(0, 200);
  const error = (parsed as { error?: unknown } | undefined)?.error;
  const code =
    res.statusCode === 401 ? ErrorCode.Unauthenticated
    : res.statusCode === 403 ? ErrorCode.PermissionDenied
    : res.statusCode === 404 ? ErrorCode.NotFound
    : res.statusCode === 409 ? ErrorCode.Conflict
    : error === 'policy_invalid' ? ErrorCode.Policy
    : res.statusCode >= 500 ? ErrorCode.Internal
    : ErrorCode.BadRequest;
  throw new AirlockError(code, `control plane refused (${res.statusCode}): ${why}`);
}

function readCaFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new AirlockError(ErrorCode.Config, `cannot read the CA file ${path} (the control plane's trust bundle, to verify its admin API): ${errorMessage(err)}`);
  }
}

/** undici wraps TLS failures; the cause says what went wrong (an unknown CA, the wrong identity). */
function describe(err: unknown): string {
  const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
  return `${errorMessage(err)}${cause}`;
}
