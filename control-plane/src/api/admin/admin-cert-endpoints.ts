import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { canonicalSerial } from '@airlock/common/spiffe';
import { adminSpiffeId } from '../../ca/ca.ts';
import type { CaRing } from '../../ca/ca-ring.ts';
import { recordAdminAction } from '../../audit/admin-action.ts';
import type { AuditLog } from '../../audit/event.ts';
import type { Store } from '../../store/store.ts';
import { ADMIN_ROLES, ADMIN_TOKEN_PRINCIPAL, type AdminRole } from './admin-auth.ts';
import { ok, type AdminEndpoint } from './endpoints.ts';

/** Admin certificates are for people and scripts: long enough not to be a chore, short enough to lapse. */
export const ADMIN_CERT_TTL_MS = 30 * 24 * 3_600_000;

export interface AdminCertEndpointDeps {
  readonly store: Store;
  readonly ring: Pick<CaRing, 'issuing' | 'bundlePem'>;
  readonly audit: AuditLog;
}

/**
 * `POST /v1/admin-certs` {name, role, csrPem} (admin) → 201 {name, role, spiffeId, certPem, caPem,
 * notAfter}: signs an admin client certificate for the gRPC AdminService from the caller's CSR (the
 * key never leaves the caller) and records its serial with the role chosen now.
 */
export function adminCertEndpoints(deps: AdminCertEndpointDeps): AdminEndpoint[] {
  return [
    {
      method: 'POST',
      path: /^\/v1\/admin-certs$/,
      role: 'admin',
      handle: async ({ who, body }) => {
        const { name, role, csrPem } = await body(['name', 'role', 'csrPem']);
        if (typeof name !== 'string') throw new AirlockError(ErrorCode.BadRequest, '"name" must be a string');
        if (name === ADMIN_TOKEN_PRINCIPAL) throw new AirlockError(ErrorCode.BadRequest, `"${ADMIN_TOKEN_PRINCIPAL}" names the admin token; choose another name`);
        if (typeof role !== 'string' || !(ADMIN_ROLES as readonly string[]).includes(role)) throw new AirlockError(ErrorCode.BadRequest, `"role" must be one of ${ADMIN_ROLES.join(', ')}`);
        if (typeof csrPem !== 'string') throw new AirlockError(ErrorCode.BadRequest, '"csrPem" must be a PEM certificate request');
        const ca = deps.ring.issuing();
        const issued = ca.issueAdminCertificate(csrPem, name, ADMIN_CERT_TTL_MS);
        const now = Date.now();
        const spiffeId = adminSpiffeId(ca.trustDomain, name);
        await deps.store.recordCertificate({ serial: issued.serial, spiffeId, notAfter: issued.notAfter.getTime(), issuedAt: now, issuer: issued.issuer });
        await deps.store.addAdminCertificate({ serial: canonicalSerial(issued.serial), name, role: role as AdminRole, createdAt: now, notAfter: issued.notAfter.getTime() });
        await recordAdminAction(deps, { actor: who.name, role: who.role, action: 'admin-cert.create', target: spiffeId, detail: { role, serial: issued.serial } }, now);
        return ok({ name, role, spiffeId, certPem: issued.chainPem, caPem: deps.ring.bundlePem(), notAfter: issued.notAfter.toISOString() }, 201);
      },
    },
    {
      method: 'POST',
      path: /^\/v1\/admin-certs\/revoke$/,
      role: 'admin',
      handle: async ({ who, body }) => {
        const { name } = await body(['name']);
        if (typeof name !== 'string' || name === '') throw new AirlockError(ErrorCode.BadRequest, '"name" must be the name the admin certificates were issued to');
        const revoked = await deps.store.revokeAdminCertificates(name, Date.now());
        if (revoked === 0) throw new AirlockError(ErrorCode.NotFound, `no admin certificate was issued to "${name}"`);
        await recordAdminAction(deps, { actor: who.name, role: who.role, action: 'admin-cert.revoke', target: name, detail: { certificates: revoked } });
        return ok({ name, revoked });
      },
    },
  ];
}
