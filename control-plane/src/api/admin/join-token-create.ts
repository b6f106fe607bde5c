import type { IncomingMessage, ServerResponse } from 'node:http';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import { isControlPlaneId, parseSpiffeId } from '@airlock/common/spiffe';
import { sendJson, type AdminRoute } from '@airlock/common/telemetry';
import { DEFAULT_JOIN_TOKEN_TTL_MS, MAX_JOIN_TOKEN_TTL_MS, type JoinTokens } from '../../attestation/join-tokens.ts';
import type { Store } from '../../store/store.ts';
import type { RequireRole } from './admin-auth.ts';
import { objectBody, readJson } from './admin-body.ts';
import { HttpError, sendError } from './http-errors.ts';

export interface AdminRouteDeps {
  readonly store: Store;
  readonly joinTokens: JoinTokens;
  /** The audit logger: written at any log level. */
  readonly audit: Logger;
  readonly requireRole: RequireRole;
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
      const who = await deps.requireRole(req, 'admin');
      const body = await readJson(req);
      const { identity, ttlSeconds, labels } = objectBody(body, ['identity', 'ttlSeconds', 'labels']);
      if (labels !== undefined && (typeof labels !== 'object' || labels === null || Array.isArray(labels) || Object.values(labels).some((v) => typeof v !== 'string'))) {
        throw new AirlockError(ErrorCode.BadRequest, '"labels" must be an object of string values');
      }
      if (typeof identity !== 'string') throw new AirlockError(ErrorCode.BadRequest, '"identity" must be a SPIFFE ID string');
      // Sidecars trust whoever holds the control plane's identity to decide every call: no token mints it.
      if (isControlPlaneId(parseSpiffeId(identity))) throw new AirlockError(ErrorCode.BadRequest, `${identity} is the control plane's own identity: no join token is issued for it`);
      let ttlMs = DEFAULT_JOIN_TOKEN_TTL_MS;
      if (ttlSeconds !== undefined) {
        if (typeof ttlSeconds !== 'number' || !Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds * 1000 > MAX_JOIN_TOKEN_TTL_MS) {
          throw new AirlockError(ErrorCode.BadRequest, `"ttlSeconds" must be a whole number from 1 to ${MAX_JOIN_TOKEN_TTL_MS / 1000}`);
        }
        ttlMs = ttlSeconds * 1000;
      }
      const created = await deps.joinTokens.createJoinToken(identity, ttlMs, (labels ?? {}) as Record<string, string>);
      // Who minted a credential for which identity: the token's id (a hash prefix), never its secret.
      deps.audit.info(
        { audit: true, actor: who.name, action: 'join-token.create', id: created.id, identity: created.identity, expiresAt: created.expiresAt.toISOString(), labels: created.labels },
        'join token created',
      );
      await deps.store.addAuditEvent({ at: Date.now(), actor: who.name, action: 'join-token.create', target: created.identity, detail: JSON.stringify({ id: created.id, expiresAt: created.expiresAt.toISOString(), labels: created.labels }) });
      sendJson(res, 201, { token: created.token, id: created.id, identity: created.identity, expiresAt: created.expiresAt.toISOString(), labels: created.labels });
    } catch (err) {
      sendError(res, err);
    }
    return true;
  };
}
