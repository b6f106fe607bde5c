import { X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { canonicalSerial, uriSans } from '@airlock/common/spiffe';
import { issuerOf, type PeerIssuers } from '../peer.ts';
import { ADMIN_NAME } from '../../ca/ca.ts';
import { hashToken } from '../../attestation/token-hash.ts';
import type { AdminRole, Store } from '../../store/store.ts';

export type { AdminRole } from '../../store/store.ts';

export const ADMIN_ROLES: readonly AdminRole[] = ['viewer', 'editor', 'responder', 'admin'];

/** Who made an admin request: what audit events name. */
/** The principal of the admin token (`<dataDir>/admin-token`): no API token or admin certificate may take its name. */
export const ADMIN_TOKEN_PRINCIPAL = 'admin-token';

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
export type RequireRole = (req: IncomingMessage, role: AdminRole) => Promise<Principal>;

/** The one authentication and RBAC check every admin route uses. */
export function createRequireRole(store: Store): RequireRole {
  return async (req, role) => requireGrant(await tokenPrincipal(store, req.headers.authorization), role);
}

/** Whose bearer token an `Authorization` value carries; throws Unauthenticated for none or an unknown one. */
export async function tokenPrincipal(store: Store, authorization: string | undefined): Promise<Principal> {
  // RFC 9110 §11.1: the scheme is case-insensitive (`bearer`, `BEARER`), then one or more spaces.
  const m = /^bearer +([A-Za-z0-9_\-.~+/=]{1,512})$/i.exec(authorization ?? '');
  if (m?.[1] === undefined) throw new AirlockError(ErrorCode.Unauthenticated, 'a bearer token is required (Authorization: Bearer <token>)');
  // Looked up by hash, never compared as plain text.
  const hash = hashToken(m[1]);
  const principal: Principal | undefined = (await store.hasAdminTokenHash(hash)) ? { name: ADMIN_TOKEN_PRINCIPAL, role: 'admin' } : await store.findApiToken(hash);
  if (principal === undefined) throw new AirlockError(ErrorCode.Unauthenticated, 'unknown bearer token');
  if ('revokedAt' in principal && principal.revokedAt !== undefined) throw new AirlockError(ErrorCode.Unauthenticated, 'this bearer token was revoked');
  return { name: principal.name, role: principal.role };
}

/**
 * Whose admin client certificate (DER) this is: issued by one of our CAs, valid now, not a CA,
 * naming exactly spiffe://<td>/admin/<name>, and recorded at issuance (serial, name, role). A
 * workload SVID (/ns/…/sa/…) or another CA's certificate is Unauthenticated.
 */
export async function certificatePrincipal(store: Store, der: Buffer | undefined, issuers: PeerIssuers, trustDomain: string, now = Date.now()): Promise<Principal> {
  if (der === undefined || der.length === 0) throw new AirlockError(ErrorCode.Unauthenticated, 'an admin client certificate or a bearer token is required');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch {
    throw new AirlockError(ErrorCode.Unauthenticated, 'the client certificate cannot be parsed');
  }
  if (issuerOf(cert, issuers) === undefined) throw new AirlockError(ErrorCode.Unauthenticated, 'the client certificate is not issued by this control plane');
  if (now < cert.validFromDate.getTime() || now > cert.validToDate.getTime()) throw new AirlockError(ErrorCode.Unauthenticated, 'the client certificate is not valid now');
  if (cert.ca) throw new AirlockError(ErrorCode.Unauthenticated, 'a CA certificate is not an admin certificate');
  const uris = uriSans(cert.subjectAltName);
  const prefix = `spiffe://${trustDomain}/admin/`;
  const name = uris.length === 1 && uris[0]?.startsWith(prefix) === true ? uris[0].slice(prefix.length) : undefined;
  if (name === undefined || !ADMIN_NAME.test(name)) throw new AirlockError(ErrorCode.Unauthenticated, 'the client certificate is not an admin certificate (spiffe://<trust domain>/admin/<name>)');
  const record = await store.findAdminCertificate(canonicalSerial(cert.serialNumber));
  if (record?.name !== name) throw new AirlockError(ErrorCode.Unauthenticated, 'the client certificate was not issued as an admin certificate');
  if (record.revokedAt !== undefined) throw new AirlockError(ErrorCode.Unauthenticated, 'this admin certificate was revoked');
  return { name: `cert:${name}`, role: record.role };
}

/** The principal if its role grants `role`; else PermissionDenied naming both. */
export function requireGrant(principal: Principal, role: AdminRole): Principal {
  if (!GRANTS[principal.role].has(role)) {
    throw new AirlockError(ErrorCode.PermissionDenied, `"${principal.name}" has role ${principal.role}; this needs role ${role}`);
  }
  return principal;
}
