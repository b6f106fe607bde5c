import { X509Certificate } from 'node:crypto';
import { AirlockError, ErrorCode } from './errors.ts';

/** A parsed SPIFFE ID of the Kubernetes shape Airlock issues: spiffe://<td>/ns/<ns>/sa/<sa>. */
export interface SpiffeId {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly uri: string;
}

const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
// Kubernetes names: DNS labels (namespaces) and DNS subdomains (service accounts).
const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const SERVICE_ACCOUNT = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export function isValidTrustDomain(td: string): boolean {
  return TRUST_DOMAIN.test(td);
}

/** Parses a SPIFFE ID; throws AIRLOCK_BAD_REQUEST with the reason when it is not one Airlock issues. */
export function parseSpiffeId(uri: string): SpiffeId {
  const bad = (why: string): AirlockError =>
    new AirlockError(ErrorCode.BadRequest, `"${uri.slice(0, 200)}" is not a valid SPIFFE ID: ${why}`);
  if (!uri.startsWith('spiffe://')) throw bad('it must start with spiffe://');
  const rest = uri.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) throw bad('it needs a trust domain and a path');
  const trustDomain = rest.slice(0, slash);
  if (!isValidTrustDomain(trustDomain)) throw bad('the trust domain may hold only a-z, 0-9, ".", "-" and "_"');
  const parts = rest.slice(slash + 1).split('/');
  if (parts.length !== 4 || parts[0] !== 'ns' || parts[2] !== 'sa') throw bad('the path must be /ns/<namespace>/sa/<service-account>');
  const namespace = parts[1] ?? '';
  const serviceAccount = parts[3] ?? '';
  if (!NAMESPACE.test(namespace)) throw bad(`namespace "${namespace}" is not a Kubernetes namespace name`);
  if (!SERVICE_ACCOUNT.test(serviceAccount)) throw bad(`service account "${serviceAccount}" is not a Kubernetes name`);
  return { trustDomain, namespace, serviceAccount, uri };
}

export function formatSpiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return parseSpiffeId(`spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`).uri;
}

/** The control plane serves as spiffe://<td>/ns/airlock-system/sa/airlock-control-plane; sidecars and the CLI check it. */
export const CONTROL_PLANE_NAMESPACE = 'airlock-system';
export const CONTROL_PLANE_SERVICE_ACCOUNT = 'airlock-control-plane';

export function isControlPlaneId(id: SpiffeId): boolean {
  return id.namespace === CONTROL_PLANE_NAMESPACE && id.serviceAccount === CONTROL_PLANE_SERVICE_ACCOUNT;
}

/**
 * The mesh host name an identity serves: `<sa>.<ns>`, like a Kubernetes Service in its namespace.
 * Deriving it from the identity means no sidecar can claim another agent's name.
 */
export function meshHostOf(id: SpiffeId): string {
  return `${id.serviceAccount}.${id.namespace}`;
}

/** URI SANs of a certificate, from Node's `subjectaltname` string ("URI:a, DNS:b"). */
export function uriSans(subjectAltName: string | undefined): string[] {
  if (subjectAltName === undefined || subjectAltName === '') return [];
  // Node escapes entries containing ", " with JSON quoting, so a naive split is safe for the
  // shapes we accept: any quoted URI is refused as ambiguous by the caller's exact match.
  return subjectAltName
    .split(', ')
    .filter((entry) => entry.startsWith('URI:'))
    .map((entry) => entry.slice('URI:'.length));
}

/**
 * The SPIFFE ID of an X.509-SVID: exactly one URI SAN, and it must parse. Anything else
 * (none, two, a non-SPIFFE URI) is refused: a certificate must name one workload.
 */
export function spiffeIdFromSubjectAltName(subjectAltName: string | undefined): SpiffeId {
  const uris = uriSans(subjectAltName);
  if (uris.length !== 1) {
    throw new AirlockError(ErrorCode.Unauthenticated, `an X.509-SVID has exactly one URI SAN; this certificate has ${uris.length}`);
  }
  return parseSpiffeId(uris[0] ?? '');
}

export function spiffeIdFromCertificate(cert: X509Certificate | string | Buffer): SpiffeId {
  const x509 = cert instanceof X509Certificate ? cert : new X509Certificate(cert);
  return spiffeIdFromSubjectAltName(x509.subjectAltName);
}

/**
 * A certificate serial in one canonical form, lowercase hex without leading zeros: Node prints
 * serials uppercase and OpenSSL drops the sign byte, while the CA stores what forge wrote.
 */
export function canonicalSerial(hex: string): string {
  const s = hex.replace(/:/g, '').toLowerCase().replace(/^0+/, '');
  return s === '' ? '0' : s;
}
