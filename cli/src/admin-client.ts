import { request } from 'undici';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import type { AdminCredentials } from './credentials.ts';

/** Calls the control plane's admin JSON API and turns its error bodies into typed errors. */
export async function adminPost(creds: AdminCredentials, path: string, body: unknown): Promise<unknown> {
  let res;
  try {
    res = await request(new URL(path, creds.server), {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${creds.token}` },
      body: JSON.stringify(body),
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
  const code = res.statusCode === 401 ? ErrorCode.Unauthenticated : res.statusCode === 403 ? ErrorCode.PermissionDenied : ErrorCode.BadRequest;
  throw new AirlockError(code, `control plane refused (${res.statusCode}): ${why}`);
}
