import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../store/sqlite-store.ts';
import { CaRing, TRUST_BUNDLE_FILE } from './ca-ring.ts';
import { makeCsr } from './test-csr.ts';

const TD = 'airlock.test';
const ID = `spiffe://${TD}/ns/demo/sa/researcher`;
const TTL = 60_000;

function certsIn(pem: string): number {
  return (pem.match(/BEGIN CERTIFICATE/g) ?? []).length;
}

describe('CaRing (root rollover)', () => {
  let dir: string;
  let store: SqliteStore;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-ring-'));
    store = SqliteStore.open(dir);
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Issues an SVID from the ring's issuer and records it the way SignCertificate does. */
  async function issue(ring: CaRing, now: number, id = ID): Promise<X509Certificate> {
    const issued = ring.issuing().issueSvid(makeCsr().csrPem, id, TTL, new Date(now));
    await store.recordCertificate({ serial: issued.serial, spiffeId: id, notAfter: issued.notAfter.getTime(), issuedAt: now, issuer: issued.issuer });
    return new X509Certificate(issued.certPem);
  }

  it('keeps an activate --renew-now request across a restart until every identity it targets has renewed', async () => {
    const t0 = Date.now();
    const OTHER = `spiffe://${TD}/ns/demo/sa/tool`;
    let ring = await CaRing.open({ dataDir: dir, trustDomain: TD, store }, t0);
    await issue(ring, t0, ID);
    await issue(ring, t0, OTHER);
    await ring.prepare(t0);
    await ring.activate({ renewNow: true }, t0 + 1);

    // Restart: a new store handle and ring over the same data dir.
    await store.close();
    store = SqliteStore.open(dir);
    ring = await CaRing.open({ dataDir: dir, trustDomain: TD, store }, t0 + 2);
    expect(ring.renewHintPem()).toBe(ring.issuing().certPem);
    expect((await ring.status(t0 + 2)).renewNow).toBe(true);

    await issue(ring, t0 + 3, ID);
    expect(await ring.settleRenewNow(t0 + 3)).toBe(false); // OTHER has not renewed yet
    expect(ring.renewHintPem()).not.toBe('');
    await issue(ring, t0 + 4, OTHER);
    expect(await ring.settleRenewNow(t0 + 4)).toBe(true);
    expect(ring.renewHintPem()).toBe('');
    await store.close();
    store = SqliteStore.open(dir);
    expect((await CaRing.open({ dataDir: dir, trustDomain: TD, store }, t0 + 5)).renewHintPem()).toBe('');
  });

  it('ends a --renew-now request once the old root SVIDs have expired, renewed or not', async () => {
    const t0 = Date.now();
    const ring = await CaRing.open({ dataDir: dir, trustDomain: TD, store }, t0);
    await issue(ring, t0);
    await ring.prepare(t0);
    await ring.activate({ renewNow: true }, t0);
    expect(await ring.settleRenewNow(t0 + 1)).toBe(false);
    expect(await ring.settleRenewNow(t0 + TTL + 1)).toBe(true);
    expect(ring.renewHintPem()).toBe('');
  });

  it('prepare adds a root that does not issue; activate switches issuance; retire waits for the old SVIDs to expire', async () => {
    const t0 = Date.now();
    const ring = await CaRing.open({ dataDir: dir, trustDomain: TD, store }, t0);
    const first = ring.issuing();
    const changes: string[][] = [];
    ring.onChange((c) => changes.push([...c]));
    const oldLeaf = await issue(ring, t0);

    const prepared = await ring.prepare(t0);
    expect(prepared.state).toBe('prepared');
    expect(statSync(join(dir, `ca-${prepared.id}.key`)).mode & 0o777).toBe(0o600);
    expect(certsIn(ring.bundlePem())).toBe(2);
    expect(certsIn(readFileSync(join(dir, TRUST_BUNDLE_FILE), 'utf8'))).toBe(2);
    expect(ring.issuing().id).toBe(first.id);
    await expect(ring.prepare(t0)).rejects.toThrow(/already prepared/);

    await ring.activate({ renewNow: true }, t0);
    expect(ring.issuing().id).toBe(prepared.id);
    expect(ring.renewHintPem()).toBe(ring.issuing().certPem);
    const newLeaf = await issue(ring, t0);
    // Both kinds of caller are accepted while both roots are trusted.
    expect(ring.verifiers().some((v) => v.issued(oldLeaf))).toBe(true);
    expect(ring.verifiers().some((v) => v.issued(newLeaf))).toBe(true);

    await expect(ring.retire({ force: false }, t0)).rejects.toThrow(/1 unexpired SVID/);
    expect(certsIn(ring.bundlePem())).toBe(2);
    const retired = await ring.retire({ force: false }, t0 + TTL + 1);
    expect(retired.map((r) => r.id)).toEqual([first.id]);
    expect(certsIn(ring.bundlePem())).toBe(1);
    expect(ring.verifiers().some((v) => v.issued(oldLeaf))).toBe(false);
    expect(changes).toEqual([['bundle'], ['issuer', 'bundle'], ['bundle']]);
    await expect(ring.retire({ force: false }, t0 + TTL + 1)).rejects.toThrow(/no previous root/);
  });

  it('keeps the rollover state across restarts', async () => {
    const t0 = Date.now();
    const ring = await CaRing.open({ dataDir: dir, trustDomain: TD, store }, t0);
    const prepared = await ring.prepare(t0);
    await ring.activate({ renewNow: false }, t0);
    const again = await CaRing.open({ dataDir: dir, trustDomain: TD, store }, t0);
    expect(again.issuing().id).toBe(prepared.id);
    expect((await again.status(t0)).roots.map((r) => r.state).sort()).toEqual(['active', 'previous']);
    expect(again.bundlePem()).toBe(ring.bundlePem());
  });

  it('retires with --force even while SVIDs of the old root are unexpired, and never the active root', async () => {
    const t0 = Date.now();
    const ring = await CaRing.open({ dataDir: dir, trustDomain: TD, store }, t0);
    const first = ring.issuing().id;
    await issue(ring, t0);
    await expect(ring.retire({ id: first, force: true }, t0)).rejects.toThrow(/is the one issuing/);
    await ring.prepare(t0);
    await ring.activate({ renewNow: false }, t0);
    expect((await ring.retire({ id: first.slice(0, 12), force: true }, t0)).map((r) => r.state)).toEqual(['retired']);
  });
});
