import { X509Certificate, type KeyObject } from 'node:crypto';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { spiffeIdFromCertificate, type SpiffeId } from '@airlock/common/spiffe';

/**
 * The caller's SPIFFE ID from its client certificate (DER), checked here as well as by TLS: the
 * listener asks for but cannot require a client certificate, so this is the gate. It must be
 * signed by our CA, be within its validity, not be a CA, and name exactly one identity of our
 * trust domain.
 */
export function verifyPeerCertificate(der: Buffer | undefined, issuers: PeerIssuers, trustDomain: string, now = Date.now()): SpiffeId {
  return verifyPeer(der, issuers, trustDomain, now).id;
}

/**
 * Who may have signed a caller's certificate: the one CA key, or every CA still trusted (during a
 * root rollover, the old and the new; with an operator CA, its intermediate).
 */
export type PeerIssuers = KeyObject | readonly PeerIssuer[];

export interface PeerIssuer {
  readonly id: string;
  issued(cert: X509Certificate): boolean;
}

/** The issuer that signed `cert` ('' for a bare CA key), or undefined when none did. */
export function issuerOf(cert: X509Certificate, issuers: PeerIssuers): string | undefined {
  if (!Array.isArray(issuers)) return cert.verify(issuers as KeyObject) ? '' : undefined;
  return (issuers as readonly PeerIssuer[]).find((i) => i.issued(cert))?.id;
}

/** Whether the issuer a stream's caller was verified against is still trusted (a root may be retired). */
export function stillTrusted(peer: VerifiedPeer, issuers: PeerIssuers): boolean {
  if (!Array.isArray(issuers)) return true;
  return (issuers as readonly PeerIssuer[]).some((i) => i.id === peer.issuerId);
}

/** A verified caller and when its certificate stops being valid (a long-lived stream re-checks it). */
export interface VerifiedPeer {
  readonly id: SpiffeId;
  /** ms since the epoch. */
  readonly notAfter: number;
  /** Which trusted CA issued it ('' for a bare CA key). */
  readonly issuerId: string;
}

/** verifyPeerCertificate, also returning the expiry. */
export function verifyPeer(der: Buffer | undefined, issuers: PeerIssuers, trustDomain: string, now = Date.now()): VerifiedPeer {
  if (der === undefined || der.length === 0) throw new AirlockError(ErrorCode.Unauthenticated, 'a client certificate (X.509-SVID) is required');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch {
    throw new AirlockError(ErrorCode.Unauthenticated, 'the client certificate cannot be parsed');
  }
  const issuerId = issuerOf(cert, issuers);
  if (issuerId === undefined) throw new AirlockError(ErrorCode.Unauthenticated, 'the client certificate is not issued by this control plane');
  if (now < cert.validFromDate.getTime() || now > cert.validToDate.getTime()) {
    throw new AirlockError(ErrorCode.Unauthenticated, 'the client certificate is not valid now');
  }
  if (cert.ca) throw new AirlockError(ErrorCode.Unauthenticated, 'a CA certificate is not a workload identity');
  let id: SpiffeId;
  try {
    id = spiffeIdFromCertificate(cert);
  } catch (err) {
    throw new AirlockError(ErrorCode.Unauthenticated, `the client certificate is not an X.509-SVID: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (id.trustDomain !== trustDomain) throw new AirlockError(ErrorCode.Unauthenticated, `the client certificate is for trust domain ${id.trustDomain}`);
  return { id, notAfter: cert.validToDate.getTime(), issuerId };
}
