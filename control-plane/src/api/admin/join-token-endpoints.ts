import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { isControlPlaneId, parseSpiffeId } from '@airlock/common/spiffe';
import { DEFAULT_JOIN_TOKEN_TTL_MS, MAX_JOIN_TOKEN_TTL_MS, type JoinTokens } from '../../attestation/join-tokens.ts';
import { recordAdminAction } from '../../audit/admin-action.ts';
import type { AuditLog } from '../../audit/event.ts';
import type { Store } from '../../store/store.ts';
import { optionalString } from './admin-body.ts';
import { ok, type AdminEndpoint } from './endpoints.ts';

export interface JoinTokenEndpointDeps {
  readonly store: Store;
  readonly joinTokens: JoinTokens;
  /** The audit trail: written at any log level. */
  readonly audit: AuditLog;
}

/**
 * Join tokens, all role admin: `POST /v1/join-tokens` {identity, ttlSeconds?, labels?} → 201 {token,
 * id, identity, expiresAt, labels}; `GET /v1/join-tokens` → {items:[{id, identity, status, expiresAt,
 * createdAt, usedAt, revokedAt}]} (never a secret: the id is a prefix of the token's hash); `POST
 * /v1/join-tokens/revoke` {id} → {token, alreadyRevoked}: a revoked token is refused at attestation.
 */
export function joinTokenEndpoints(deps: JoinTokenEndpointDeps): AdminEndpoint[] {
  return [
    {
      method: 'POST',
      path: /^\/v1\/join-tokens$/,
      role: 'admin',
      handle: async ({ who, body }) => {
        const { identity, ttlSeconds, labels } = await body(['identity', 'ttlSeconds', 'labels']);
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
        const detail = { id: created.id, expiresAt: created.expiresAt.toISOString(), labels: created.labels };
        await recordAdminAction(deps, { actor: who.name, role: who.role, action: 'join-token.create', target: created.identity, detail });
        return ok({ token: created.token, id: created.id, identity: created.identity, expiresAt: detail.expiresAt, labels: created.labels }, 201);
      },
    },
    {
      method: 'GET',
      path: /^\/v1\/join-tokens$/,
      role: 'admin',
      handle: async () => ok({ items: await deps.joinTokens.list() }),
    },
    {
      method: 'POST',
      path: /^\/v1\/join-tokens\/revoke$/,
      role: 'admin',
      handle: async ({ who, body }) => {
        const id = optionalString(await body(['id']), 'id');
        if (id === undefined) throw new AirlockError(ErrorCode.BadRequest, '"id" is required (from `airlock token list`)');
        const result = await deps.joinTokens.revoke(id);
        await recordAdminAction(deps, { actor: who.name, role: who.role, action: 'join-token.revoke', target: result.token.identity, detail: { id: result.token.id, alreadyRevoked: result.alreadyRevoked } });
        return ok(result);
      },
    },
  ];
}
