import { X509Certificate, createPrivateKey } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Counter, Gauge } from 'prom-client';
import type { Logger } from '@airlock/common/logging';
import { AirlockError, ErrorCode, errorMessage, isAirlockError } from '@airlock/common/errors';
import { spiffeIdFromCertificate } from '@airlock/common/spiffe';
import type { CertificateSigner } from './certificate-signer.ts';
import { newKeyAndCsr, type KeyAndCsr, type KeyType } from './key-and-csr.ts';
import type { Svid, SvidSource } from './svid.ts';

/** The certificates of a PEM bundle, each parsed (throws on one that is not). */
function caCertificates(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((b) => new X509Certificate(b));
}

export interface IdentityProviderOptions {
  readonly signer: CertificateSigner;
  /** host:port where peers reach our inbound listener; known only once it is bound. */
  readonly inboundAddress: () => string;
  readonly expiryGauge: Gauge;
  readonly logger: Logger;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** Renews over mTLS with the current SVID; without one the SVID is never renewed. */
  readonly renewer?: CertificateSigner;
  readonly renewals?: Counter;
  readonly renewalFailures?: Counter;
  /** Source of jitter in [0, 1); tests pin it. */
  readonly random?: () => number;
  /** Number of CA certificates in the trust bundle in use. */
  readonly bundleGauge?: Gauge;
  /** The key each SVID is made for (default ECDSA P-256). */
  readonly keyType?: KeyType;
}

/** A renewal asked for at once (`ca activate --renew-now`) waits up to this long, so a fleet spreads out. */
const RENEW_NOW_SPREAD_MS = 2000;

/** Renew when this fraction of the remaining lifetime has passed, ± RENEW_JITTER (spreads a fleet). */
const RENEW_AT = 0.5;
const RENEW_JITTER = 0.1;

/** When to renew an SVID received at `receivedAt`: half its remaining life, with jitter. */
export function renewalDelayMs(expiresAt: Date, receivedAt: number, random: () => number = Math.random): number {
  const remaining = expiresAt.getTime() - receivedAt;
  return Math.max(0, remaining * (RENEW_AT - RENEW_JITTER + 2 * RENEW_JITTER * random()));
}

/**
 * Obtains and holds this sidecar's X.509-SVID. The key is made here and never leaves; only a CSR
 * goes to the control plane. While the control plane is unreachable it retries with backoff.
 * Each SVID is renewed at about half its life with a fresh key, over mTLS with itself; a failed
 * renewal keeps the SVID we hold (still valid) and retries with backoff until one succeeds.
 */
export class IdentityProvider implements SvidSource {
  readonly #o: IdentityProviderOptions;
  readonly #listeners = new Set<(svid: Svid) => void>();
  readonly #closing = new AbortController();
  #svid: Svid | undefined;
  #failure: string | undefined;
  #firstSvid: PromiseWithResolvers<Svid> = Promise.withResolvers();
  #renewTimer: NodeJS.Timeout | undefined;
  #renewing = false;
  /** The bundle last pushed by the control plane: newer than the one a SignCertificate answer carried. */
  #pushedBundle: string | undefined;
  #renewHint = '';
  #hintActedOn = '';

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

  /**
   * A trust bundle pushed by the control plane (root rollover): from now on every new connection
   * (inbound, to peers, to the control plane) verifies against it; open ones finish. Listeners get
   * the same key and certificate with the new bundle. A bundle without a certificate is ignored.
   */
  useTrustBundle(pem: string): void {
    // Every push carries the bundle (a revocation too): parse it only when it changed.
    if (pem === this.#pushedBundle) return;
    let count: number;
    try {
      count = caCertificates(pem).length;
    } catch (err) {
      this.#o.logger.error({ reason: errorMessage(err) }, 'ignored a trust bundle that does not parse');
      return;
    }
    if (count === 0) {
      this.#o.logger.error('ignored an empty trust bundle');
      return;
    }
    this.#pushedBundle = pem;
    this.#o.bundleGauge?.set(count);
    const svid = this.#svid;
    if (svid === undefined || svid.trustBundlePem === pem) return;
    this.#o.logger.info({ certificates: count }, 'trust bundle updated');
    this.#publish({ ...svid, trustBundlePem: pem });
  }

  /**
   * Renews soon (within RENEW_NOW_SPREAD_MS) unless our SVID was issued by `caPem`: after a root
   * is activated with --renew-now, so the rollover does not wait for half-lives. '' does nothing.
   */
  renewUnlessIssuedBy(caPem: string): void {
    this.#renewHint = caPem;
    this.#applyRenewHint();
  }

  /** Acts on the renewal hint once per hint, when an SVID is held and no renewal is under way. */
  #applyRenewHint(): void {
    const hint = this.#renewHint;
    const svid = this.#svid;
    const renewer = this.#o.renewer;
    if (hint === '' || hint === this.#hintActedOn || svid === undefined || renewer === undefined || this.#renewing || this.#isClosed()) return;
    this.#hintActedOn = hint;
    try {
      const ca = new X509Certificate(hint);
      const leaf = new X509Certificate(svid.certChainPem);
      if (leaf.checkIssued(ca) && leaf.verify(ca.publicKey)) return;
    } catch (err) {
      this.#o.logger.warn({ reason: errorMessage(err) }, 'ignored a renewal hint that does not parse');
      return;
    }
    clearTimeout(this.#renewTimer);
    const delay = (this.#o.random ?? Math.random)() * RENEW_NOW_SPREAD_MS;
    this.#o.logger.info({ renewInMs: Math.round(delay) }, 'the control plane issues from a new CA; renewing now');
    this.#renewTimer = setTimeout(() => void this.#renew(renewer), delay);
  }

  close(): void {
    this.#closing.abort();
    clearTimeout(this.#renewTimer);
    this.#o.renewer?.close();
    this.#firstSvid.reject(new AirlockError(ErrorCode.Internal, 'identity provider closed'));
    this.#o.signer.close();
  }

  async #obtain(): Promise<void> {
    const log = this.#o.logger;
    let delay = this.#o.backoff?.initialMs ?? 100;
    const maxDelay = this.#o.backoff?.maxMs ?? 5000;
    // One key for every attempt: a join token is spent by its first request, and only the same key
    // (and inbound address) may spend it again when that request's answer was lost.
    let keyAndCsr: KeyAndCsr | undefined;
    while (!this.#isClosed()) {
      try {
        keyAndCsr ??= await newKeyAndCsr(this.#o.keyType);
        this.#install(await this.#requestSvid(this.#o.signer, undefined, keyAndCsr));
        return;
      } catch (err) {
        if (this.#isClosed()) return;
        if (isAirlockError(err) && err.code !== ErrorCode.UpstreamUnavailable) {
          // Refused (e.g. a used or expired join token): retrying cannot help; readyz says why.
          this.#failure = err.message;
          // Flat fields: under `err`, pino's error serializer turns a plain object into {type: "Object", stack: ""}.
          // Never the token: the control plane's refusal does not repeat it.
          log.error({ code: err.code, reason: err.message }, 'cannot obtain an SVID');
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

  /** Renews until one attempt succeeds or we are closed; the SVID held meanwhile stays in use. */
  async #renew(renewer: CertificateSigner): Promise<void> {
    if (this.#renewing) return;
    this.#renewing = true;
    try {
      await this.#renewLoop(renewer);
    } finally {
      this.#renewing = false;
    }
    // A hint that arrived while this renewal was under way (its SVID may be from the old CA).
    this.#applyRenewHint();
  }

  async #renewLoop(renewer: CertificateSigner): Promise<void> {
    const log = this.#o.logger;
    let delay = this.#o.backoff?.initialMs ?? 100;
    const maxDelay = this.#o.backoff?.maxMs ?? 5000;
    while (!this.#isClosed()) {
      try {
        const svid = await this.#requestSvid(renewer, this.#svid);
        if (this.#isClosed()) return;
        this.#o.renewals?.inc();
        this.#install(svid);
        return;
      } catch (err) {
        if (this.#isClosed()) return;
        this.#o.renewalFailures?.inc();
        const expiresAt = this.#svid?.expiresAt.toISOString();
        log.warn({ retryInMs: delay, reason: errorMessage(err), expiresAt }, 'SVID renewal failed; keeping the current SVID and retrying');
      }
      try {
        await sleep(delay, undefined, { signal: this.#closing.signal });
      } catch {
        return;
      }
      delay = Math.min(delay * 2, maxDelay);
    }
  }

  #scheduleRenewal(svid: Svid): void {
    const renewer = this.#o.renewer;
    if (renewer === undefined || this.#isClosed()) return;
    clearTimeout(this.#renewTimer);
    const delay = renewalDelayMs(svid.expiresAt, Date.now(), this.#o.random);
    this.#renewTimer = setTimeout(() => void this.#renew(renewer), delay);
    this.#o.logger.debug({ renewInMs: Math.round(delay) }, 'SVID renewal scheduled');
  }

  async #requestSvid(signer: CertificateSigner, current?: Svid, keyAndCsr?: KeyAndCsr): Promise<Svid> {
    const { keyPem, csrPem } = keyAndCsr ?? (await newKeyAndCsr(this.#o.keyType));
    const signed = await signer.sign({ csrPem, inboundAddress: this.#o.inboundAddress(), ...(current === undefined ? {} : { current }) });
    // Check what we were given before serving with it: our key, the ID we were told, still valid.
    const leaf = new X509Certificate(signed.certChainPem);
    const leafId = spiffeIdFromCertificate(leaf).uri;
    if (current !== undefined && leafId !== current.spiffeId) {
      throw new AirlockError(ErrorCode.Attestation, `renewal returned a certificate for ${leafId}, we are ${current.spiffeId}`);
    }
    if (leafId !== signed.spiffeId) {
      throw new AirlockError(ErrorCode.Attestation, `issued certificate names ${leafId}, the response says ${signed.spiffeId}`);
    }
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) {
      throw new AirlockError(ErrorCode.Attestation, 'issued certificate does not match our key');
    }
    const expiresAt = new Date(leaf.validTo);
    // A pushed bundle is never older than the one in an answer (the push follows every change).
    return { spiffeId: leafId, certChainPem: signed.certChainPem, keyPem, trustBundlePem: this.#pushedBundle ?? signed.trustBundlePem, expiresAt };
  }

  #install(svid: Svid): void {
    this.#svid = svid;
    this.#failure = undefined;
    this.#o.expiryGauge.set(svid.expiresAt.getTime() / 1000);
    this.#o.logger.info({ spiffeId: svid.spiffeId, expiresAt: svid.expiresAt.toISOString() }, 'holding an X.509-SVID');
    this.#firstSvid.resolve(svid);
    this.#scheduleRenewal(svid);
    if (this.#pushedBundle === undefined) this.#o.bundleGauge?.set(caCertificates(svid.trustBundlePem).length);
    this.#publish(svid);
    this.#applyRenewHint();
  }

  #publish(svid: Svid): void {
    this.#svid = svid;
    for (const listener of this.#listeners) {
      try {
        listener(svid);
      } catch (err) {
        this.#o.logger.error({ reason: errorMessage(err) }, 'SVID change listener failed');
      }
    }
  }
}
