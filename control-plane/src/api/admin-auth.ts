import type { IncomingMessage } from 'node:http';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { hashToken } from '../attestation/token-hash.ts';
import type { AdminRole, Store } from '../store/store.ts';

export type { AdminRole } from '../store/store.ts';

export const ADMIN_ROLES: readonly AdminRole[] = ['viewer', 'editor', 'responder', 'admin'];

/** Who made an admin request: what audit events name. */
export interface Principal {
  readonly name: string;
  readonly role: AdminRole;
}

/**
 * What each role may do: viewer reads; editor also changes policy; responder also takes incident
 * actions (revocation); admin does everything, including join tokens and API tokens.
 */
const GRANTS: Readonly<Record<AdminRole, ReadonlySet<AdminRole>>> = {
  viewer: new Set(['viewer']),
  editor: new Set(['viewer', 'editor']),
  responder: new Set(['viewer', 'responder']),
  admin: new Set(ADMIN_ROLES),
};

/** Checks the request's bearer token has `role`; throws 401 (no/unknown token) or 403 (too weak). */
export type RequireRole = (req: IncomingMessage, role: AdminRole) => Principal;

/** The one authentication and RBAC check every admin route uses. */
export function createRequireRole(store: Store): RequireRole {
  return (req, role) => {
    const m = /^Bearer ([A-Za-z0-9_\-.~+/=]{1,512})$/.exec(req.headers.authorization ?? '');
    if (m?.[1] === undefined) throw new AirlockError(ErrorCode.Unauthenticated, 'a bearer token is required (Authorization: Bearer <token>)');
    // Looked up by hash, never compared as plain text.
    const hash = hashToken(m[1]);
    const principal: Principal | undefined = store.hasAdminTokenHash(hash) ? { name: 'admin-token', role: 'admin' } : store.findApiToken(hash);
    if (principal === undefined) throw new AirlockError(ErrorCode.Unauthenticated, 'unknown bearer token');
    if (!GRANTS[principal.role].has(role)) {
      throw new AirlockError(ErrorCode.PermissionDenied, `token "${principal.name}" has role ${principal.role}; this needs role ${role}`);
    }
    return { name: principal.name, role: principal.role };
  };
}
