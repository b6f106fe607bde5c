import type { PeerCertificate } from 'node:tls';
import { errorMessage } from '@airlock/common/errors';
import { spiffeIdFromSubjectAltName } from '@airlock/common/spiffe';

/**
 * A `checkServerIdentity` that accepts only a certificate whose single URI SAN is `expectedId`.
 * Peers are verified by SPIFFE ID, never by host name (the chain is checked by TLS against the CA).
 */
export function expectSpiffeId(expectedId: string): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    try {
      const actual = spiffeIdFromSubjectAltName(cert.subjectaltname).uri;
      if (actual === expectedId) return undefined;
      return new Error(`peer presented ${actual}, expected ${expectedId}`);
    } catch (err) {
      return new Error(`peer certificate is not the X.509-SVID of ${expectedId}: ${errorMessage(err)}`);
    }
  };
}
