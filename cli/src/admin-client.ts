import { request } from 'undici';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import type { AdminCredentials } from './credentials.ts';

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

async function adminRequest(creds: AdminCredentials, method: 'GET' | 'POST' | 'DELETE', path: string, body: unknown): Promise<unknown> {
  let res;
  try {
    res = await request(new URL(path, creds.server), {
      method,
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), authorization: `Bearer ${creds.token}` },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
  } catch (err) {
    throw new AirlockError(ErrorCode.AuthzUnavailable, `cannot reach the control plane at ${creds.server}: ${errorMessage(err)}`);
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
