import type { SecureContextOptions } from 'node:tls';
import { ServerCredentials } from '@grpc/grpc-js';
import type { TlsMinVersion } from '@airlock/common/config';
import type { StaticCertificateProvider } from './certificate-provider.ts';

/**
 * The gRPC listener's TLS: certificates from a StaticCertificateProvider (replaced at run time),
 * a client certificate asked for but not required (the first SignCertificate has none), and a TLS
 * version floor. grpc-js's createCertificateProviderServerCredentials has no TLS options; its
 * ServerCredentials takes the TLS server's options and each new context's options, minVersion in
 * both (Node's setSecureContext resets the version bounds it is not given).
 */
class ProviderServerCredentials extends ServerCredentials {
  constructor(provider: StaticCertificateProvider, minVersion: TlsMinVersion, handshakeTimeoutMs: number) {
    // The TLS server's options: a client that has not finished its handshake in time is cut.
    super({ requestCert: true, rejectUnauthorized: false, minVersion, handshakeTimeout: handshakeTimeoutMs });
    let ca: Buffer | undefined;
    let identity: { certificate: Buffer; privateKey: Buffer } | undefined;
    const update = (): void => {
      if (ca === undefined || identity === undefined) return;
      const options: SecureContextOptions = { ca, cert: [identity.certificate], key: [identity.privateKey], minVersion };
      this.updateSecureContextOptions(options);
    };
    // The provider calls back at once (asynchronously) and on every change, for the server's lifetime.
    provider.addCaCertificateListener((u) => {
      ca = u?.caCertificate;
      update();
    });
    provider.addIdentityCertificateListener((u) => {
      identity = u ?? undefined;
      update();
    });
  }

  _equals(other: ServerCredentials): boolean {
    return this === other;
  }
}

export function providerServerCredentials(provider: StaticCertificateProvider, minVersion: TlsMinVersion, handshakeTimeoutMs: number): ServerCredentials {
  return new ProviderServerCredentials(provider, minVersion, handshakeTimeoutMs);
}
