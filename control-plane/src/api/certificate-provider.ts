import { experimental } from '@grpc/grpc-js';

type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

/**
 * In-memory certificates for the gRPC listener (providerServerCredentials), replaceable at run time
 * (serving-cert renewal, trust bundle rotation). grpc-js's `createSsl` either does not ask for a
 * client certificate or rejects clients without one; the listener must ask but not require: the
 * first SignCertificate call of a sidecar has no certificate yet.
 */
export class StaticCertificateProvider implements experimental.CertificateProvider {
  #ca: Buffer;
  #identity: { certificate: Buffer; privateKey: Buffer };
  readonly #caListeners = new Set<CaListener>();
  readonly #identityListeners = new Set<IdentityListener>();

  constructor(caPem: string, certPem: string, keyPem: string) {
    this.#ca = Buffer.from(caPem);
    this.#identity = { certificate: Buffer.from(certPem), privateKey: Buffer.from(keyPem) };
  }

  update(o: { caPem?: string; certPem?: string; keyPem?: string }): void {
    if (o.caPem !== undefined) this.#ca = Buffer.from(o.caPem);
    if (o.certPem !== undefined && o.keyPem !== undefined) this.#identity = { certificate: Buffer.from(o.certPem), privateKey: Buffer.from(o.keyPem) };
    for (const l of this.#caListeners) l({ caCertificate: this.#ca });
    for (const l of this.#identityListeners) l(this.#identity);
  }

  // grpc-js registers its watcher only after adding these listeners, so the first update must
  // arrive asynchronously or it is lost (connections would be dropped as "credentials not loaded").
  addCaCertificateListener(listener: CaListener): void {
    this.#caListeners.add(listener);
    queueMicrotask(() => {
      if (this.#caListeners.has(listener)) listener({ caCertificate: this.#ca });
    });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.#caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.#identityListeners.add(listener);
    queueMicrotask(() => {
      if (this.#identityListeners.has(listener)) listener(this.#identity);
    });
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.#identityListeners.delete(listener);
  }
}
