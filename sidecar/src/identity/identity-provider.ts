import { X509Certificate, createPrivateKey } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Gauge } from 'prom-client';
import type { Logger } from '@airlock/common/logging';
import { AirlockError, ErrorCode, errorMessage, isAirlockError } from '@airlock/common/errors';
import { spiffeIdFromCertificate } from '@airlock/common/spiffe';
import type { CertificateSigner } from './certificate-signer.ts';
import { newKeyAndCsr } from './key-and-csr.ts';
import type { Svid, SvidSource } from './svid.ts';

export interface IdentityProviderOptions {
  readonly signer: CertificateSigner;
  /** host:port where peers reach our inbound listener; known only once it is bound. */
  readonly inboundAddress: () => string;
  readonly expiryGauge: Gauge;
  readonly logger: Logger;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
}

/**
 * Obtains and holds this sidecar's X.509-SVID. The key is made here and never leaves; only a CSR
 * goes to the control plane. While the control plane is unreachable it retries with backoff.
 * Renewal at half-life (issue 3) plugs in at `#install`: schedule `#obtain` again from there.
 */
export class IdentityProvider implements SvidSource {
  readonly #o: IdentityProviderOptions;
  readonly #listeners = new Set<(svid: Svid) => void>();
  readonly #closing = new AbortController();
  #svid: Svid | undefined;
  #failure: string | undefined;
  #firstSvid: PromiseWithResolvers<Svid> = Promise.withResolvers();

  constructor(o: IdentityProviderOptions) {
    this.#o = o;
    // Nobody may be waiting on ready(): don't let a close() turn into an unhandled rejection.
    this.#firstSvid.promise.catch(() => undefined);
  }

  /** Starts obtaining the first SVID in the background. */
  start(): void {
    void this.#obtain();
  }

  /** Resolves with the first SVID; rejects if the control plane refused us or we were closed. */
  ready(): Promise<Svid> {
    return this.#firstSvid.promise;
  }

  current(): Svid | undefined {
    return this.#svid;
  }

  onChange(listener: (svid: Svid) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Why the sidecar cannot serve yet, or undefined when it holds a valid SVID. */
  notReadyReason(now = Date.now()): string | undefined {
    if (this.#svid === undefined) return this.#failure === undefined ? 'no SVID yet' : `no SVID yet: ${this.#failure}`;
    if (this.#svid.expiresAt.getTime() <= now) return `SVID expired at ${this.#svid.expiresAt.toISOString()}`;
    return undefined;
  }

  close(): void {
    this.#closing.abort();
    this.#firstSvid.reject(new AirlockError(ErrorCode.Internal, 'identity provider closed'));
    this.#o.signer.close();
  }

  async #obtain(): Promise<void> {
    const log = this.#o.logger;
    let delay = this.#o.backoff?.initialMs ?? 100;
    const maxDelay = this.#o.backoff?.maxMs ?? 5000;
    while (!this.#isClosed()) {
      try {
        this.#install(await this.#requestSvid());
        return;
      } catch (err) {
        if (this.#isClosed()) return;
        if (isAirlockError(err) && err.code !== ErrorCode.UpstreamUnavailable) {
          // Refused (e.g. a used or expired join token): retrying cannot help; readyz says why.
          this.#failure = err.message;
          log.error({ err: { code: err.code, message: err.message } }, 'cannot obtain an SVID');
          this.#firstSvid.reject(err);
          return;
        }
        this.#failure = errorMessage(err);
        log.warn({ retryInMs: delay, reason: this.#failure }, 'control plane unreachable; retrying');
      }
      try {
        await sleep(delay, undefined, { signal: this.#closing.signal });
      } catch {
        return;
      }
      delay = Math.min(delay * 2, maxDelay);
    }
  }

  #isClosed(): boolean {
    return this.#closing.signal.aborted;
  }

  async #requestSvid(): Promise<Svid> {
    const { keyPem, csrPem } = await newKeyAndCsr();
    const signed = await this.#o.signer.sign({ csrPem, inboundAddress: this.#o.inboundAddress() });
    // Check what we were given before serving with it: our key, the ID we were told, still valid.
    const leaf = new X509Certificate(signed.certChainPem);
    const leafId = spiffeIdFromCertificate(leaf).uri;
    if (leafId !== signed.spiffeId) {
      throw new AirlockError(ErrorCode.Attestation, `issued certificate names ${leafId}, the response says ${signed.spiffeId}`);
    }
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) {
      throw new AirlockError(ErrorCode.Attestation, 'issued certificate does not match our key');
    }
    const expiresAt = new Date(leaf.validTo);
    return { spiffeId: leafId, certChainPem: signed.certChainPem, keyPem, trustBundlePem: signed.trustBundlePem, expiresAt };
  }

  #install(svid: Svid): void {
    this.#svid = svid;
    this.#failure = undefined;
    this.#o.expiryGauge.set(svid.expiresAt.getTime() / 1000);
    this.#o.logger.info({ spiffeId: svid.spiffeId, expiresAt: svid.expiresAt.toISOString() }, 'holding an X.509-SVID');
    this.#firstSvid.resolve(svid);
    for (const listener of this.#listeners) {
      try {
        listener(svid);
      } catch (err) {
        this.#o.logger.error({ reason: errorMessage(err) }, 'SVID change listener failed');
      }
    }
  }
}
