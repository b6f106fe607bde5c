import { X509Certificate } from 'node:crypto';
import { chmodSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import type { CaRootRecord, CaRootState, RenewNowRequest, Store } from '../store/store.ts';
import { CertificateAuthority, splitPem } from './ca.ts';
import { openKey, sealKey, type KeyEncryptionKey } from './key-encryption.ts';

/** The trust bundle as a file in the data dir, rewritten on every change: what new sidecars take as `--ca-file`. */
export const TRUST_BUNDLE_FILE = 'trust-bundle.pem';

export interface OperatorCaFiles {
  /** PEM: the signing CA certificate (e.g. an intermediate from cert-manager), then any intermediates above it. */
  readonly certFile: string;
  /** PEM: its RSA private key. */
  readonly keyFile: string;
  /** PEM: the root(s) that CA chains to: the trust bundle sidecars are given. */
  readonly bundleFile: string;
}

export interface CaRingOptions {
  readonly dataDir: string;
  readonly trustDomain: string;
  readonly store: Store;
  /** Bring-your-own CA: issue from the operator's CA instead of self-made roots. */
  readonly operator?: OperatorCaFiles;
  /** Seals new roots' keys into the store (every replica can issue) instead of key files in dataDir. */
  readonly kek?: KeyEncryptionKey;
}

export interface RootStatus {
  readonly id: string;
  readonly state: CaRootState;
  readonly subject: string;
  readonly notAfter: string;
  readonly createdAt: string;
  /** SVIDs this root issued that are still valid (what `retire` waits for). */
  readonly unexpiredSvids: number;
  readonly lastSvidExpiry: string | undefined;
}

export interface CaStatus {
  readonly mode: 'self-made' | 'operator';
  readonly issuer: string;
  readonly renewNow: boolean;
  readonly roots: readonly RootStatus[];
}

/** What changed: `bundle` (roots trusted) or `issuer` (the CA that signs). */
export type CaChange = 'bundle' | 'issuer';

interface Root {
  record: CaRootRecord;
  ca: CertificateAuthority | undefined;
}

/**
 * The roots of the trust domain through a rollover: `prepare` adds a new root to the bundle (not
 * issuing), `activate` makes it the issuer (the old one stays trusted), `retire` removes an old one
 * from the bundle once no unexpired SVID it issued remains. State lives in the store; keys in files.
 * With operator CA files instead, the operator's CA issues, its roots are the bundle, and these
 * steps are refused (the operator rotates that CA where it is issued).
 */
export class CaRing {
  readonly #o: CaRingOptions;
  readonly #roots: Root[] = [];
  readonly #operator: { ca: CertificateAuthority; bundlePem: string } | undefined;
  readonly #listeners = new Set<(changes: readonly CaChange[]) => void>();
  /** verifiers(), kept between rollover steps: it is read on every Authorize call and stream message. */
  #verifiers: readonly CertificateAuthority[] | undefined;
  /** `activate --renew-now`, kept in the store until the sidecars it targets have renewed (survives restarts). */
  #renewNow: RenewNowRequest | undefined;

  private constructor(o: CaRingOptions, operator: { ca: CertificateAuthority; bundlePem: string } | undefined) {
    this.#o = o;
    this.#operator = operator;
  }

  static async open(o: CaRingOptions, now = Date.now()): Promise<CaRing> {
    if (o.operator !== undefined) {
      const ring = new CaRing(o, loadOperatorCa(o.trustDomain, o.operator));
      ring.#writeBundleFile();
      return ring;
    }
    const ring = new CaRing(o, undefined);
    let records = await o.store.listCaRoots();
    if (records.length === 0) {
      // First start: a root sealed into the store, or (no KEK; also a data dir from before roots were
      // tracked) ca.{pem,key} in the data dir. Of replicas starting at once, one root is kept.
      let first: CaRootRecord;
      if (o.kek !== undefined) {
        const { ca, keyPem } = CertificateAuthority.createRoot(o.trustDomain, new Date(now));
        first = { id: ca.id, certPem: ca.certPem, keyFile: '', sealedKey: sealKey(o.kek, ca.id, keyPem), state: 'active', createdAt: now, updatedAt: now };
      } else {
        const ca = CertificateAuthority.loadOrCreate(o.dataDir, o.trustDomain, new Date(now));
        first = { id: ca.id, certPem: ca.certPem, keyFile: 'ca.key', state: 'active', createdAt: now, updatedAt: now };
      }
      records = await o.store.initCaRoots(first);
      if (records.some((r) => r.id === first.id)) await o.store.assignUnknownIssuer(first.id);
    }
    for (const record of records) {
      ring.#roots.push({ record, ca: record.state === 'retired' ? undefined : ring.#load(record) });
    }
    const active = ring.#roots.filter((r) => r.record.state === 'active');
    if (active.length !== 1) throw new AirlockError(ErrorCode.Config, `the store holds ${active.length} active roots; exactly one must be active`);
    const renewNow = await o.store.getRenewNowRequest();
    if (renewNow?.rootId === active[0]?.record.id) ring.#renewNow = renewNow;
    else if (renewNow !== undefined) await o.store.setRenewNowRequest(undefined);
    ring.#writeBundleFile();
    return ring;
  }

  /**
   * Another replica made a ring step: the roots and the renew-now request are read again, and the
   * listeners told what changed (the bundle, the issuer), as for a step made here.
   */
  async reload(): Promise<void> {
    if (this.#operator !== undefined) return;
    const records = await this.#o.store.listCaRoots();
    const trustedBefore = this.#trusted().map((r) => r.record.id).sort().join();
    const issuerBefore = this.issuing().id;
    for (const record of records) {
      const known = this.#roots.find((r) => r.record.id === record.id);
      if (known === undefined) this.#roots.push({ record, ca: record.state === 'retired' ? undefined : this.#load(record) });
      else {
        known.record = record;
        if (record.state === 'retired') known.ca = undefined;
      }
    }
    const renewNow = await this.#o.store.getRenewNowRequest();
    this.#renewNow = renewNow?.rootId === this.issuing().id ? renewNow : undefined;
    const changes: CaChange[] = [];
    if (this.issuing().id !== issuerBefore) changes.push('issuer');
    if (this.#trusted().map((r) => r.record.id).sort().join() !== trustedBefore || changes.length > 0) changes.push('bundle');
    if (changes.length > 0) this.#changed(changes);
  }

  /** The CA that signs SVIDs now. */
  issuing(): CertificateAuthority {
    if (this.#operator !== undefined) return this.#operator.ca;
    const active = this.#roots.find((r) => r.record.state === 'active')?.ca;
    if (active === undefined) throw new AirlockError(ErrorCode.Internal, 'no active root');
    return active;
  }

  /** PEM of every root sidecars must trust: active first, then prepared and previous ones. */
  bundlePem(): string {
    if (this.#operator !== undefined) return this.#operator.bundlePem;
    const order: Record<CaRootState, number> = { active: 0, prepared: 1, previous: 2, retired: 3 };
    return this.#trusted()
      .sort((a, b) => order[a.record.state] - order[b.record.state])
      .map((r) => r.record.certPem)
      .join('');
  }

  /** The CAs whose signature on a caller's certificate the control plane accepts (those still trusted). */
  verifiers(): readonly CertificateAuthority[] {
    this.#verifiers ??= this.#operator !== undefined ? [this.#operator.ca] : this.#trusted().flatMap((r) => (r.ca === undefined ? [] : [r.ca]));
    return this.#verifiers;
  }

  /** PEM of the issuing CA when sidecars were asked to renew at once (`activate --renew-now`), else ''. */
  renewHintPem(): string {
    if (this.#renewNow === undefined) return '';
    return this.#roots.find((r) => r.record.id === this.#renewNow?.rootId && r.record.state === 'active')?.record.certPem ?? '';
  }

  /**
   * Ends an `activate --renew-now` request once no identity still holds an unexpired SVID of another
   * root without one from the active root issued since the request. True when it ended.
   */
  async settleRenewNow(now = Date.now()): Promise<boolean> {
    const request = this.#renewNow;
    if (request === undefined) return false;
    if ((await this.#o.store.countIdentitiesAwaitingRenewal(request.rootId, request.requestedAt, now)) > 0) return false;
    await this.#o.store.setRenewNowRequest(undefined);
    this.#renewNow = undefined;
    return true;
  }

  onChange(listener: (changes: readonly CaChange[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async status(now = Date.now()): Promise<CaStatus> {
    if (this.#operator !== undefined) {
      const ca = this.#operator.ca;
      return { mode: 'operator', issuer: ca.id, renewNow: false, roots: [await this.#statusOf({ id: ca.id, certPem: ca.certPem, keyFile: '', state: 'active', createdAt: 0, updatedAt: 0 }, now)] };
    }
    return { mode: 'self-made', issuer: this.issuing().id, renewNow: this.renewHintPem() !== '', roots: await Promise.all(this.#roots.map((r) => this.#statusOf(r.record, now))) };
  }

  /** A new root, added to the bundle (pushed to every sidecar) but not yet issuing. */
  async prepare(now = Date.now()): Promise<RootStatus> {
    this.#refuseOperator('prepare');
    const pending = this.#roots.find((r) => r.record.state === 'prepared');
    if (pending !== undefined) throw new AirlockError(ErrorCode.Conflict, `root ${pending.record.id} is already prepared: activate it, or retire it to start over`);
    const { ca, keyPem } = CertificateAuthority.createRoot(this.#o.trustDomain, new Date(now), new Date(now).toISOString());
    let record: CaRootRecord;
    if (this.#o.kek !== undefined) {
      record = { id: ca.id, certPem: ca.certPem, keyFile: '', sealedKey: sealKey(this.#o.kek, ca.id, keyPem), state: 'prepared', createdAt: now, updatedAt: now };
    } else {
      const keyFile = `ca-${ca.id}.key`;
      const keyPath = join(this.#o.dataDir, keyFile);
      writeFileSync(keyPath, keyPem, { mode: 0o600, flag: 'wx' });
      chmodSync(keyPath, 0o600);
      record = { id: ca.id, certPem: ca.certPem, keyFile, state: 'prepared', createdAt: now, updatedAt: now };
    }
    await this.#o.store.saveCaRoots([record]);
    this.#roots.push({ record, ca });
    this.#changed(['bundle']);
    return this.#statusOf(record, now);
  }

  /**
   * The prepared root becomes the issuer; the one issuing until now stays in the bundle as
   * `previous`. With `renewNow`, sidecars are told to renew at once rather than at half-life.
   */
  async activate(o: { renewNow: boolean }, now = Date.now()): Promise<RootStatus> {
    this.#refuseOperator('activate');
    const next = this.#roots.find((r) => r.record.state === 'prepared');
    if (next === undefined) throw new AirlockError(ErrorCode.Conflict, 'no root is prepared: run `airlock ca prepare` first, and let the bundle reach the sidecars');
    const current = this.#roots.find((r) => r.record.state === 'active');
    const updates: CaRootRecord[] = [{ ...next.record, state: 'active', updatedAt: now }];
    if (current !== undefined) updates.push({ ...current.record, state: 'previous', updatedAt: now });
    await this.#o.store.saveCaRoots(updates);
    next.record = updates[0] ?? next.record;
    if (current !== undefined) current.record = updates[1] ?? current.record;
    this.#renewNow = o.renewNow ? { rootId: next.record.id, requestedAt: now } : undefined;
    await this.#o.store.setRenewNowRequest(this.#renewNow);
    this.#changed(['issuer', 'bundle']);
    return this.#statusOf(next.record, now);
  }

  /**
   * Removes roots from the bundle: `id`, or every `previous` root. Refused while one of them has
   * issued an SVID that is still valid (its holder would be cut off), unless `force`.
   */
  async retire(o: { id?: string; force: boolean }, now = Date.now()): Promise<RootStatus[]> {
    this.#refuseOperator('retire');
    const wanted = o.id?.toLowerCase();
    const targets =
      wanted === undefined
        ? this.#roots.filter((r) => r.record.state === 'previous')
        : this.#roots.filter((r) => r.record.id === wanted || (wanted.length >= 8 && r.record.id.startsWith(wanted)));
    if (wanted !== undefined && targets.length !== 1) {
      throw new AirlockError(targets.length === 0 ? ErrorCode.NotFound : ErrorCode.BadRequest, targets.length === 0 ? `no root has id ${wanted}` : `several roots have ids starting ${wanted}`);
    }
    if (targets.length === 0) throw new AirlockError(ErrorCode.Conflict, 'no previous root to retire (a root stops issuing with `airlock ca activate`)');
    for (const t of targets) {
      if (t.record.state === 'active') throw new AirlockError(ErrorCode.Conflict, `root ${t.record.id} is the one issuing; activate another first`);
      if (t.record.state === 'retired') throw new AirlockError(ErrorCode.Conflict, `root ${t.record.id} is already retired`);
      const left = await this.#o.store.unexpiredCertificatesOf(t.record.id, now);
      if (left.count > 0 && !o.force) {
        const until = left.lastNotAfter === undefined ? '' : `; the last expires at ${new Date(left.lastNotAfter).toISOString()}`;
        throw new AirlockError(ErrorCode.Conflict, `root ${t.record.id} still has ${left.count} unexpired SVID(s) it issued${until}: retire it after that, or with --force (their holders are then refused by every peer)`);
      }
    }
    const updates = targets.map((t) => ({ ...t.record, state: 'retired' as const, updatedAt: now }));
    await this.#o.store.saveCaRoots(updates);
    for (const [i, t] of targets.entries()) {
      t.record = updates[i] ?? t.record;
      t.ca = undefined;
    }
    this.#changed(['bundle']);
    return Promise.all(updates.map((r) => this.#statusOf(r, now)));
  }

  #trusted(): Root[] {
    return this.#roots.filter((r) => r.record.state !== 'retired');
  }

  #load(record: CaRootRecord): CertificateAuthority {
    if (record.sealedKey !== undefined) {
      if (this.#o.kek === undefined) throw new AirlockError(ErrorCode.Config, `the key of root ${record.id} is sealed in the store: give caKeyEncryptionKeyFile (the key-encryption key every replica shares)`);
      return CertificateAuthority.fromPem(this.#o.trustDomain, record.certPem, openKey(this.#o.kek, record.id, record.sealedKey));
    }
    let keyPem: string;
    try {
      keyPem = readFileSync(join(this.#o.dataDir, record.keyFile), 'utf8');
    } catch (err) {
      throw new AirlockError(ErrorCode.Config, `cannot read the key of root ${record.id} (${join(this.#o.dataDir, record.keyFile)}): ${errorMessage(err)}`);
    }
    return CertificateAuthority.fromPem(this.#o.trustDomain, record.certPem, keyPem);
  }

  async #statusOf(record: CaRootRecord, now: number): Promise<RootStatus> {
    const x509 = new X509Certificate(record.certPem);
    const left = await this.#o.store.unexpiredCertificatesOf(record.id, now);
    return {
      id: record.id,
      state: record.state,
      subject: x509.subject.replace(/\n/g, ', '),
      notAfter: x509.validToDate.toISOString(),
      createdAt: new Date(record.createdAt).toISOString(),
      unexpiredSvids: left.count,
      lastSvidExpiry: left.lastNotAfter === undefined ? undefined : new Date(left.lastNotAfter).toISOString(),
    };
  }

  #refuseOperator(step: string): void {
    if (this.#operator !== undefined) {
      throw new AirlockError(ErrorCode.Conflict, `the CA is supplied by the operator (caCertFile): ${step} it where it is issued (e.g. cert-manager) and restart with the new files`);
    }
  }

  #changed(changes: readonly CaChange[]): void {
    this.#verifiers = undefined;
    this.#writeBundleFile();
    for (const l of this.#listeners) l(changes);
  }

  /** Written then renamed, so a sidecar starting meanwhile never reads half a bundle. */
  #writeBundleFile(): void {
    const path = join(this.#o.dataDir, TRUST_BUNDLE_FILE);
    writeFileSync(`${path}.tmp`, this.bundlePem(), { mode: 0o644 });
    renameSync(`${path}.tmp`, path);
  }
}

function loadOperatorCa(trustDomain: string, files: OperatorCaFiles): { ca: CertificateAuthority; bundlePem: string } {
  const read = (what: string, path: string): string => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new AirlockError(ErrorCode.Config, `${what}: cannot read ${path}: ${errorMessage(err)}`);
    }
  };
  const ca = CertificateAuthority.fromOperator(trustDomain, read('caCertFile', files.certFile), read('caKeyFile', files.keyFile));
  const roots = splitPem(read('caBundleFile', files.bundleFile));
  if (roots.length === 0) throw new AirlockError(ErrorCode.Config, `caBundleFile: ${files.bundleFile} holds no PEM certificate`);
  // The top of the chain we send must be signed by (or be) a root of the bundle, or no peer could verify it.
  const chain = splitPem(ca.chainPem).map((p) => new X509Certificate(p));
  const top = chain[chain.length - 1] ?? ca.x509;
  const anchored = roots.some((pem) => {
    const root = new X509Certificate(pem);
    return root.fingerprint256 === top.fingerprint256 || (top.checkIssued(root) && top.verify(root.publicKey));
  });
  if (!anchored) throw new AirlockError(ErrorCode.Config, `caCertFile: ${files.certFile} does not chain to a root in caBundleFile ${files.bundleFile}`);
  return { ca, bundlePem: roots.join('') };
}
