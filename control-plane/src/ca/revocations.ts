import { canonicalSerial } from '@airlock/common/spiffe';
import type { DecisionState } from '../authz/decision-state.ts';
import type { IssuedCertificate, Store } from '../store/store.ts';

/** A certificate to refuse, as RFC 5280 names one: a serial is unique only per issuer. */
export interface RevokedCertificate {
  /** The issuer's DN as Node prints it (X509Certificate#issuer); '' when unknown: that serial from any issuer. */
  readonly issuer: string;
  /** Canonical (see canonicalSerial). */
  readonly serial: string;
}

/** What sidecars are pushed: the roots to trust and the certificates to refuse. */
export interface TrustBundleSnapshot {
  readonly trustBundlePem: string;
  /** Unexpired certificates of revoked identities. */
  readonly revokedCertificates: readonly RevokedCertificate[];
  readonly revokedSpiffeIds: readonly string[];
  /** PEM of the issuing CA when sidecars not holding an SVID from it should renew at once, else ''. */
  readonly renewUnlessIssuedByPem: string;
}

export interface RevocationResult {
  readonly identity: string;
  readonly revokedAt: number;
  /** False when the identity was already revoked (revoking is idempotent). */
  readonly newlyRevoked: boolean;
  /** Serials of its certificates still unexpired: refused by every sidecar from now on. */
  readonly serials: readonly string[];
}

export interface RevocationsOptions {
  readonly store: Store;
  /** Where decisions read the revoked identities: published whole on every revocation. */
  readonly decisions: DecisionState;
  readonly trustBundlePem: () => string;
  readonly renewHintPem?: () => string;
  /** The DN of a CA by its id (what the store records as a certificate's issuer). */
  readonly issuerName?: (issuerId: string) => string | undefined;
}

/**
 * Revoked identities and their certificates, held in memory (loaded from the store at start)
 * because Authorize asks on every call. A revocation is written to the store first, then watchers
 * are told at once. A revoked identity is refused new certificates, so its set stays as read.
 */
export class Revocations {
  readonly #store: Store;
  readonly #trustBundlePem: () => string;
  readonly #renewHintPem: () => string;
  readonly #issuerName: (issuerId: string) => string | undefined;
  readonly #revoked = new Map<string, { readonly revokedAt: number; readonly certificates: readonly IssuedCertificate[] }>();
  readonly #watchers = new Set<(snapshot: TrustBundleSnapshot) => void>();

  readonly #decisions: DecisionState;

  private constructor(o: RevocationsOptions) {
    this.#store = o.store;
    this.#decisions = o.decisions;
    this.#issuerName = o.issuerName ?? (() => undefined);
    this.#trustBundlePem = o.trustBundlePem;
    this.#renewHintPem = o.renewHintPem ?? (() => '');
  }

  static async load(o: RevocationsOptions): Promise<Revocations> {
    const r = new Revocations(o);
    for (const { spiffeId, revokedAt } of await o.store.listRevokedIdentities()) {
      r.#revoked.set(spiffeId, { revokedAt, certificates: await o.store.listCertificates(spiffeId) });
    }
    r.#publish();
    return r;
  }

  isRevoked(spiffeId: string): boolean {
    return this.#revoked.has(spiffeId);
  }

  async revoke(spiffeId: string, now = Date.now()): Promise<RevocationResult> {
    const before = this.#revoked.get(spiffeId)?.revokedAt;
    if (before === undefined) {
      await this.#store.revokeIdentity(spiffeId, now);
      this.#revoked.set(spiffeId, { revokedAt: now, certificates: await this.#store.listCertificates(spiffeId) });
      this.#publish();
    }
    const serials = this.#certificatesOf(spiffeId, now).map((c) => c.serial);
    if (before === undefined) this.#notify(now);
    return { identity: spiffeId, revokedAt: before ?? now, newlyRevoked: before === undefined, serials };
  }

  /** An identity another replica revoked: denied here from now on, and pushed to this replica's sidecars. */
  async follow(revoked: { spiffeId: string; revokedAt: number }, now = Date.now()): Promise<void> {
    if (this.#revoked.has(revoked.spiffeId)) return;
    const certificates = await this.#store.listCertificates(revoked.spiffeId);
    if (this.#revoked.has(revoked.spiffeId)) return;
    this.#revoked.set(revoked.spiffeId, { revokedAt: revoked.revokedAt, certificates });
    this.#publish();
    this.#notify(now);
  }

  snapshot(now = Date.now()): TrustBundleSnapshot {
    const ids = [...this.#revoked.keys()];
    return { trustBundlePem: this.#trustBundlePem(), revokedCertificates: ids.flatMap((id) => this.#certificatesOf(id, now)), revokedSpiffeIds: ids, renewUnlessIssuedByPem: this.#renewHintPem() };
  }

  /** The trust bundle (or the renewal hint) changed: every watcher gets a new snapshot now. */
  bundleChanged(now = Date.now()): void {
    this.#notify(now);
  }

  /** Calls `listener` with each new snapshot (not the current one); returns an unsubscribe function. */
  watch(listener: (snapshot: TrustBundleSnapshot) => void): () => void {
    this.#watchers.add(listener);
    return () => this.#watchers.delete(listener);
  }

  #certificatesOf(spiffeId: string, now: number): RevokedCertificate[] {
    return (this.#revoked.get(spiffeId)?.certificates ?? [])
      .filter((c) => c.notAfter > now)
      .map((c) => ({ issuer: (c.issuer === undefined ? undefined : this.#issuerName(c.issuer)) ?? '', serial: canonicalSerial(c.serial) }));
  }

  #publish(): void {
    this.#decisions.replace({ revoked: new Set(this.#revoked.keys()) });
  }

  #notify(now: number): void {
    const snapshot = this.snapshot(now);
    for (const w of this.#watchers) w(snapshot);
  }
}
