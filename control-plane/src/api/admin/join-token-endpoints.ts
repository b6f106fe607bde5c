import type { IncomingMessage, ServerResponse } from 'node:http';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import { sendJson, type AdminRoute } from '@airlock/common/telemetry';
import type { JoinTokens } from '../../attestation/join-tokens.ts';
import type { Store } from '../../store/store.ts';
import type { RequireRole } from './admin-auth.ts';
import { objectBody, optionalString, readJson } from './admin-body.ts';
import { HttpError, sendError } from './http-errors.ts';

export interface JoinTokenAdminDeps {
  readonly store: Store;
  readonly joinTokens: JoinTokens;
  readonly requireRole: RequireRole;
  readonly audit: Logger;
}

/**
 * `GET /v1/join-tokens` → {items:[{id, identity, status, expiresAt, createdAt, usedAt, revokedAt}]}
 * (never a secret: the id is a prefix of the token's hash), and `POST /v1/join-tokens/revoke` {id}
 * → {token, alreadyRevoked}: a revoked token is refused at attestation. Both need role admin.
 */
export function joinTokenAdminRoutes(deps: JoinTokenAdminDeps): AdminRoute {
  return async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const path = (req.url ?? '/').split('?')[0];
    const list = path === '/v1/join-tokens' && req.method === 'GET';
    if (!list && path !== '/v1/join-tokens/revoke') return false;
    try {
      if (list) {
        await deps.requireRole(req, 'admin');
        sendJson(res, 200, { items: await deps.joinTokens.list() });
        return true;
      }
      if (req.method !== 'POST') {
        res.setHeader('allow', 'POST');
        throw new HttpError(405, 'method_not_allowed', 'use POST');
      }
      const who = await deps.requireRole(req, 'admin');
      const id = optionalString(objectBody(await readJson(req), ['id']), 'id');
      if (id === undefined) throw new AirlockError(ErrorCode.BadRequest, '"id" is required (from `airlock token list`)');
      const result = await deps.joinTokens.revoke(id);
      deps.audit.warn({ audit: true, action: 'join-token.revoke', actor: who.name, id: result.token.id, identity: result.token.identity, alreadyRevoked: result.alreadyRevoked }, 'join token revoked');
      await deps.store.addAuditEvent({ at: Date.now(), actor: who.name, action: 'join-token.revoke', target: result.token.identity, detail: JSON.stringify({ id: result.token.id, alreadyRevoked: result.alreadyRevoked }) });
      sendJson(res, 200, result);
    } catch (err) {
      sendError(res, err);
    }
    return true;
  };
}
