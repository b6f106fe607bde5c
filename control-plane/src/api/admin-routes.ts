import type { IncomingMessage, ServerResponse } from 'node:http';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import { sendJson, type AdminRoute } from '@airlock/common/telemetry';
import { DEFAULT_JOIN_TOKEN_TTL_MS, MAX_JOIN_TOKEN_TTL_MS, type JoinTokens } from '../attestation/join-tokens.ts';
import type { Store } from '../store/store.ts';
import type { RequireRole } from './admin-auth.ts';
import { HttpError, sendError } from './http-errors.ts';

const MAX_BODY_BYTES = 64 * 1024;

export interface AdminRouteDeps {
  readonly store: Store;
  readonly joinTokens: JoinTokens;
  readonly logger: Logger;
  readonly requireRole: RequireRole;
}

/** Reads a JSON body of at most `max` bytes; more is 413, not JSON is 400. */
export async function readJson(req: IncomingMessage, max = MAX_BODY_BYTES): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > max) throw new HttpError(413, 'payload_too_large', `the body must be at most ${max} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) throw new HttpError(413, 'payload_too_large', `the body must be at most ${max} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new AirlockError(ErrorCode.BadRequest, 'the body must be JSON');
  }
}

/** `POST /v1/join-tokens` {identity, ttlSeconds?, labels?} with the admin bearer token → 201 {token, id, identity, expiresAt, labels}. */
export function joinTokenRoute(deps: AdminRouteDeps): AdminRoute {
  return async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/v1/join-tokens') return false;
    try {
      if (req.method !== 'POST') {
        res.setHeader('allow', 'POST');
        throw new HttpError(405, 'method_not_allowed', 'use POST');
      }
      const who = deps.requireRole(req, 'admin');
      const body = await readJson(req);
      if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new AirlockError(ErrorCode.BadRequest, 'the body must be a JSON object');
      const { identity, ttlSeconds, labels, ...rest } = body as Record<string, unknown>;
      const unknown = Object.keys(rest);
      if (unknown.length > 0) throw new AirlockError(ErrorCode.BadRequest, `unknown field(s): ${unknown.join(', ')} (known: identity, ttlSeconds, labels)`);
      if (labels !== undefined && (typeof labels !== 'object' || labels === null || Array.isArray(labels) || Object.values(labels).some((v) => typeof v !== 'string'))) {
        throw new AirlockError(ErrorCode.BadRequest, '"labels" must be an object of string values');
      }
      if (typeof identity !== 'string') throw new AirlockError(ErrorCode.BadRequest, '"identity" must be a SPIFFE ID string');
      let ttlMs = DEFAULT_JOIN_TOKEN_TTL_MS;
      if (ttlSeconds !== undefined) {
        if (typeof ttlSeconds !== 'number' || !Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds * 1000 > MAX_JOIN_TOKEN_TTL_MS) {
          throw new AirlockError(ErrorCode.BadRequest, `"ttlSeconds" must be a whole number from 1 to ${MAX_JOIN_TOKEN_TTL_MS / 1000}`);
        }
        ttlMs = ttlSeconds * 1000;
      }
      const created = deps.joinTokens.createJoinToken(identity, ttlMs, (labels ?? {}) as Record<string, string>);
      deps.logger.info({ audit: true, actor: who.name, action: 'join-token.create', identity: created.identity, expiresAt: created.expiresAt.toISOString() }, 'join token created');
      deps.store.addAuditEvent({ at: Date.now(), actor: who.name, action: 'join-token.create', target: created.identity, detail: JSON.stringify({ expiresAt: created.expiresAt.toISOString(), labels: created.labels }) });
      sendJson(res, 201, { token: created.token, id: created.id, identity: created.identity, expiresAt: created.expiresAt.toISOString(), labels: created.labels });
    } catch (err) {
      // Drain nothing more: a refused upload is cut rather than read to the end.
      if (err instanceof HttpError && err.status === 413) res.setHeader('connection', 'close');
      sendError(res, err);
    }
    return true;
  };
}
