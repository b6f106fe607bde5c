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
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Issues an SVID from the ring's issuer and records it the way SignCertificate does. */
  function issue(ring: CaRing, now: number, id = ID): X509Certificate {
    const issued = ring.issuing().issueSvid(makeCsr().csrPem, id, TTL, new Date(now));
    store.recordCertificate({ serial: issued.serial, spiffeId: id, notAfter: issued.notAfter.getTime(), issuedAt: now, issuer: issued.issuer });
    return new X509Certificate(issued.certPem);
  }

  it('keeps an activate --renew-now request across a restart until every identity it targets has renewed', () => {
    const t0 = Date.now();
    const OTHER = `spiffe://${TD}/ns/demo/sa/tool`;
    let ring = CaRing.open({ dataDir: dir, trustDomain: TD, store }, t0);
    issue(ring, t0, ID);
    issue(ring, t0, OTHER);
    ring.prepare(t0);
    ring.activate({ renewNow: true }, t0 + 1);

    // Restart: a new store handle and ring over the same data dir.
    store.close();
    store = SqliteStore.open(dir);
    ring = CaRing.open({ dataDir: dir, trustDomain: TD, store }, t0 + 2);
    expect(ring.renewHintPem()).toBe(ring.issuing().certPem);
    expect(ring.status(t0 + 2).renewNow).toBe(true);

    issue(ring, t0 + 3, ID);
    expect(ring.settleRenewNow(t0 + 3)).toBe(false); // OTHER has not renewed yet
    expect(ring.renewHintPem()).not.toBe('');
    issue(ring, t0 + 4, OTHER);
    expect(ring.settleRenewNow(t0 + 4)).toBe(true);
    expect(ring.renewHintPem()).toBe('');
    store.close();
    store = SqliteStore.open(dir);
    expect(CaRing.open({ dataDir: dir, trustDomain: TD, store }, t0 + 5).renewHintPem()).toBe('');
  });

  it('ends a --renew-now request once the old root SVIDs have expired, renewed or not', () => {
    const t0 = Date.now();
    const ring = CaRing.open({ dataDir: dir, trustDomain: TD, store }, t0);
    issue(ring, t0);
    ring.prepare(t0);
    ring.activate({ renewNow: true }, t0);
    expect(ring.settleRenewNow(t0 + 1)).toBe(false);
    expect(ring.settleRenewNow(t0 + TTL + 1)).toBe(true);
    expect(ring.renewHintPem()).toBe('');
  });

  it('prepare adds a root that does not issue; activate switches issuance; retire waits for the old SVIDs to expire', () => {
    const t0 = Date.now();
    const ring = CaRing.open({ dataDir: dir, trustDomain: TD, store }, t0);
    const first = ring.issuing();
    const changes: string[][] = [];
    ring.onChange((c) => changes.push([...c]));
    const oldLeaf = issue(ring, t0);

    const prepared = ring.prepare(t0);
    expect(prepared.state).toBe('prepared');
    expect(statSync(join(dir, `ca-${prepared.id}.key`)).mode & 0o777).toBe(0o600);
    expect(certsIn(ring.bundlePem())).toBe(2);
    expect(certsIn(readFileSync(join(dir, TRUST_BUNDLE_FILE), 'utf8'))).toBe(2);
    expect(ring.issuing().id).toBe(first.id);
    expect(() => ring.prepare(t0)).toThrow(/already prepared/);

    ring.activate({ renewNow: true }, t0);
    expect(ring.issuing().id).toBe(prepared.id);
    expect(ring.renewHintPem()).toBe(ring.issuing().certPem);
    const newLeaf = issue(ring, t0);
    // Both kinds of caller are accepted while both roots are trusted.
    expect(ring.verifiers().some((v) => v.issued(oldLeaf))).toBe(true);
    expect(ring.verifiers().some((v) => v.issued(newLeaf))).toBe(true);

    expect(() => ring.retire({ force: false }, t0)).toThrow(/1 unexpired SVID/);
    expect(certsIn(ring.bundlePem())).toBe(2);
    const retired = ring.retire({ force: false }, t0 + TTL + 1);
    expect(retired.map((r) => r.id)).toEqual([first.id]);
    expect(certsIn(ring.bundlePem())).toBe(1);
    expect(ring.verifiers().some((v) => v.issued(oldLeaf))).toBe(false);
    expect(changes).toEqual([['bundle'], ['issuer', 'bundle'], ['bundle']]);
    expect(() => ring.retire({ force: false }, t0 + TTL + 1)).toThrow(/no previous root/);
  });

  it('keeps the rollover state across restarts', () => {
    const t0 = Date.now();
    const ring = CaRing.open({ dataDir: dir, trustDomain: TD, store }, t0);
    const prepared = ring.prepare(t0);
    ring.activate({ renewNow: false }, t0);
    const again = CaRing.open({ dataDir: dir, trustDomain: TD, store }, t0);
    expect(again.issuing().id).toBe(prepared.id);
    expect(again.status(t0).roots.map((r) => r.state).sort()).toEqual(['active', 'previous']);
    expect(again.bundlePem()).toBe(ring.bundlePem());
  });

  it('retires with --force even while SVIDs of the old root are unexpired, and never the active root', () => {
    const t0 = Date.now();
    const ring = CaRing.open({ dataDir: dir, trustDomain: TD, store }, t0);
    const first = ring.issuing().id;
    issue(ring, t0);
    expect(() => ring.retire({ id: first, force: true }, t0)).toThrow(/is the one issuing/);
    ring.prepare(t0);
    ring.activate({ renewNow: false }, t0);
    expect(ring.retire({ id: first.slice(0, 12), force: true }, t0).map((r) => r.state)).toEqual(['retired']);
  });
});
