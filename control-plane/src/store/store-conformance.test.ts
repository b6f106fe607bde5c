// One suite, both backends: whatever the control plane relies on of its store holds on the embedded
// SQLite store and on a real etcd (started here on loopback), including races between two clients.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode } from '@airlock/common/errors';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startEtcd, type EtcdCluster } from '../../../test/support/etcd.ts';
import { EtcdStore } from './etcd-store.ts';
import { SqliteStore } from './sqlite-store.ts';
import type { CaRootRecord, Store, StoreEvent } from './store.ts';

interface Backend {
  readonly name: string;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  /** A client of the backend's state; each call a new one (a restart, or another replica). */
  open(): Promise<Store>;
}

function sqliteBackend(): Backend {
  let dir = '';
  return {
    name: 'SqliteStore',
    setup: () => {
      dir = mkdtempSync(join(tmpdir(), 'airlock-store-'));
      return Promise.resolve();
    },
    teardown: () => {
      rmSync(dir, { recursive: true, force: true });
      return Promise.resolve();
    },
    open: () => Promise.resolve(SqliteStore.open(dir)),
  };
}

function etcdBackend(cluster: () => EtcdCluster): Backend {
  let prefix = '';
  let n = 0;
  return {
    name: 'EtcdStore',
    // Each test under its own prefix of one cluster: as separate as separate clusters.
    setup: () => {
      prefix = `/airlock-test-${++n}/`;
      return Promise.resolve();
    },
    teardown: () => Promise.resolve(),
    open: () => EtcdStore.open({ endpoints: cluster().endpoints, prefix }),
  };
}

let etcd: EtcdCluster | undefined;
beforeAll(async () => {
  etcd = await startEtcd(1);
}, 30_000);
afterAll(async () => {
  await etcd?.stop();
});

const ID = 'spiffe://td/ns/a/sa/b';
const ID2 = 'spiffe://td/ns/a/sa/c';
const root = (id: string, state: CaRootRecord['state'], at: number): CaRootRecord => ({ id, certPem: `PEM-${id}`, keyFile: `ca-${id}.key`, state, createdAt: at, updatedAt: at });

const CLAIM = { claimant: 'sha256 of a CSR key and an inbound address', retryWithinMs: 60_000 };

describe.each([sqliteBackend(), etcdBackend(() => etcd as EtcdCluster)])('$name', (backend) => {
  const opened: Store[] = [];
  let store: Store;
  const client = async (): Promise<Store> => {
    const s = await backend.open();
    opened.push(s);
    return s;
  };
  beforeEach(async () => {
    await backend.setup();
    store = await client();
  });
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    await backend.teardown();
  });

  it('consumes a join token once, then reports it used', async () => {
    await store.insertJoinToken({ hash: 'h1', spiffeId: ID, expiresAt: 2000 });
    expect(await store.consumeJoinToken('h1', 1000, CLAIM)).toEqual({ ok: true, spiffeId: ID, labels: {} });
    expect(await store.consumeJoinToken('h1', 1000, { ...CLAIM, claimant: 'another key' })).toEqual({ ok: false, reason: 'used' });
  });

  it('answers a used token again to the claimant that used it, within its retry window only', async () => {
    await store.insertJoinToken({ hash: 'h4', spiffeId: ID, expiresAt: 2000, labels: { team: 'a' } });
    expect(await store.consumeJoinToken('h4', 1000, CLAIM)).toEqual({ ok: true, spiffeId: ID, labels: { team: 'a' } });
    // Another replica, after the token expired: still the same claimant's retry.
    expect(await (await client()).consumeJoinToken('h4', 2500, CLAIM)).toEqual({ ok: true, spiffeId: ID, labels: { team: 'a' }, retry: true });
    expect(await store.consumeJoinToken('h4', 1000, { ...CLAIM, claimant: 'someone else' })).toEqual({ ok: false, reason: 'used' });
    expect(await store.consumeJoinToken('h4', 1000 + CLAIM.retryWithinMs + 1, CLAIM)).toEqual({ ok: false, reason: 'used' });
  });

  it('lets exactly one of two clients racing for a join token win, every time', async () => {
    const other = await client();
    for (let i = 0; i < 20; i++) {
      await store.insertJoinToken({ hash: `race${i}`, spiffeId: ID, expiresAt: 2000 });
      // Three claimants (three keys): one wins, the others' retries would need the winner's key.
      const claim = (n: number) => ({ ...CLAIM, claimant: `claimant ${n}` });
      const results = await Promise.all([store.consumeJoinToken(`race${i}`, 1000, claim(1)), other.consumeJoinToken(`race${i}`, 1000, claim(2)), other.consumeJoinToken(`race${i}`, 1000, claim(3))]);
      expect(results.filter((r) => r.ok)).toHaveLength(1);
      expect(results.flatMap((r) => (r.ok ? [] : [r.reason]))).toEqual(['used', 'used']);
    }
  });

  it('refuses unknown, expired and revoked tokens with their reason', async () => {
    await store.insertJoinToken({ hash: 'h2', spiffeId: ID, expiresAt: 2000 });
    await store.insertJoinToken({ hash: 'h3', spiffeId: ID, expiresAt: 2000 });
    expect(await store.consumeJoinToken('nope', 1000, CLAIM)).toEqual({ ok: false, reason: 'unknown' });
    expect(await store.consumeJoinToken('h2', 2000, CLAIM)).toEqual({ ok: false, reason: 'expired' });
    expect((await store.revokeJoinTokens('h3', 1500)).map((t) => t.revokedAt)).toEqual([1500]);
    expect((await store.revokeJoinTokens('h3', 1600)).map((t) => t.revokedAt)).toEqual([1500]);
    expect(await store.consumeJoinToken('h3', 1000, CLAIM)).toEqual({ ok: false, reason: 'revoked' });
  });

  it('lists join tokens newest first and finds them by hash prefix', async () => {
    await store.insertJoinToken({ hash: 'aa01', spiffeId: ID, expiresAt: 9, createdAt: 1, labels: { team: 'x' } });
    await store.insertJoinToken({ hash: 'aa02', spiffeId: ID2, expiresAt: 9, createdAt: 2 });
    await store.insertJoinToken({ hash: 'bb01', spiffeId: ID, expiresAt: 9, createdAt: 3 });
    expect((await store.listJoinTokens()).map((t) => t.hash)).toEqual(['bb01', 'aa02', 'aa01']);
    expect((await store.findJoinTokens('aa')).map((t) => t.hash).sort()).toEqual(['aa01', 'aa02']);
    expect(await store.findJoinTokens('aa01')).toEqual([{ hash: 'aa01', spiffeId: ID, expiresAt: 9, createdAt: 1, usedAt: undefined, revokedAt: undefined, labels: { team: 'x' } }]);
    // A prefix is a prefix, never a pattern.
    expect(await store.findJoinTokens('%')).toEqual([]);
  });

  it("keeps an agent's labels across an upsert without labels (a renewal), and lists agents by SPIFFE ID", async () => {
    await store.upsertAgent({ spiffeId: ID2, inboundAddress: '127.0.0.1:1', updatedAt: 1, labels: { team: 'research' } });
    await store.upsertAgent({ spiffeId: ID2, inboundAddress: '127.0.0.1:2', updatedAt: 2 });
    expect(await store.getAgent(ID2)).toEqual({ spiffeId: ID2, inboundAddress: '127.0.0.1:2', updatedAt: 2, labels: { team: 'research' } });
    await store.upsertAgent({ spiffeId: ID2, inboundAddress: '127.0.0.1:3', updatedAt: 3, labels: {} });
    expect((await store.getAgent(ID2))?.labels).toEqual({});
    await store.upsertAgent({ spiffeId: ID, inboundAddress: '127.0.0.1:4', updatedAt: 4 });
    expect((await store.listAgents()).map((a) => a.spiffeId)).toEqual([ID, ID2]);
    expect(await store.getAgent('spiffe://td/ns/a/sa/none')).toBeUndefined();
  });

  it('keeps its state for the next client (a restart, or another replica)', async () => {
    await store.upsertAgent({ spiffeId: ID, inboundAddress: '127.0.0.1:2', updatedAt: 2 });
    await store.recordCertificate({ serial: '01', spiffeId: ID, notAfter: 5, issuedAt: 1 });
    await store.addAdminTokenHash('adm');
    await store.revokeIdentity(ID, 10);
    await store.revokeIdentity(ID, 20);
    const next = await client();
    expect(await next.getAgent(ID)).toEqual({ spiffeId: ID, inboundAddress: '127.0.0.1:2', updatedAt: 2, labels: {} });
    expect(await next.listCertificates(ID)).toEqual([{ serial: '01', spiffeId: ID, notAfter: 5, issuedAt: 1 }]);
    expect(await next.hasAdminTokenHash('adm')).toBe(true);
    expect(await next.hasAdminTokenHash('other')).toBe(false);
    expect(await next.listRevokedIdentities()).toEqual([{ spiffeId: ID, revokedAt: 10 }]);
  });

  it('retires admin tokens for good: every hash goes, none is registered again, on every client', async () => {
    expect(await store.addAdminTokenHash('first')).toBe(true);
    expect(await store.addAdminTokenHash('second')).toBe(true);
    expect(await store.adminTokensRetiredAt()).toBeUndefined();
    expect(await store.retireAdminTokens(100)).toBe(2);
    const next = await client();
    for (const s of [store, next]) {
      expect(await s.hasAdminTokenHash('first')).toBe(false);
      expect(await s.hasAdminTokenHash('second')).toBe(false);
      expect(await s.adminTokensRetiredAt()).toBe(100);
    }
    // A replica starting later (its own admin-token file) registers nothing.
    expect(await next.addAdminTokenHash('third')).toBe(false);
    expect(await store.hasAdminTokenHash('third')).toBe(false);
    // Retiring again keeps the first time.
    expect(await next.retireAdminTokens(200)).toBe(0);
    expect(await store.adminTokensRetiredAt()).toBe(100);
  });

  it('prunes the records of certificates expired before a time, and only those', async () => {
    const cert = (serial: string, notAfter: number) => ({ serial, spiffeId: ID, notAfter, issuedAt: notAfter - 100, issuer: 'r1' });
    await store.recordCertificate(cert('01', 1000));
    await store.recordCertificate(cert('02', 2000));
    await store.recordCertificate(cert('03', 3000));
    expect(await store.pruneCertificates(2001)).toBe(2);
    expect(await (await client()).pruneCertificates(2001)).toBe(0);
    expect((await store.listCertificates(ID)).map((c) => c.serial)).toEqual(['03']);
  });

  it('counts certificates per issuer, finds identities awaiting renewal, and names an unknown issuer once', async () => {
    await store.recordCertificate({ serial: '01', spiffeId: ID, notAfter: 100, issuedAt: 1 });
    await store.assignUnknownIssuer('old');
    await store.recordCertificate({ serial: '02', spiffeId: ID2, notAfter: 200, issuedAt: 2, issuer: 'old' });
    await store.recordCertificate({ serial: '03', spiffeId: ID, notAfter: 300, issuedAt: 50, issuer: 'new' });
    await store.assignUnknownIssuer('other');
    expect((await store.listCertificates(ID)).map((c) => [c.serial, c.issuer])).toEqual([['01', 'old'], ['03', 'new']]);
    expect(await store.unexpiredCertificatesOf('old', 10)).toEqual({ count: 2, lastNotAfter: 200 });
    expect(await store.unexpiredCertificatesOf('old', 200)).toEqual({ count: 0, lastNotAfter: undefined });
    // ID renewed from `new` since 40; ID2 has not.
    expect(await store.countIdentitiesAwaitingRenewal('new', 40, 10)).toBe(1);
    expect(await store.countIdentitiesAwaitingRenewal('new', 60, 10)).toBe(2);
  });

  it('saves CA roots as a step (a known root keeps its certificate, only its state moves), and the renew-now request', async () => {
    await store.saveCaRoots([root('r1', 'active', 1)]);
    await store.saveCaRoots([root('r2', 'prepared', 2)]);
    await store.saveCaRoots([{ ...root('r2', 'active', 2), certPem: 'changed', updatedAt: 3 }, { ...root('r1', 'previous', 1), updatedAt: 3 }]);
    expect(await store.listCaRoots()).toEqual([
      { ...root('r1', 'previous', 1), updatedAt: 3 },
      { ...root('r2', 'active', 2), updatedAt: 3 },
    ]);
    expect(await store.getRenewNowRequest()).toBeUndefined();
    await store.setRenewNowRequest({ rootId: 'r2', requestedAt: 3 });
    expect(await (await client()).getRenewNowRequest()).toEqual({ rootId: 'r2', requestedAt: 3 });
    await store.setRenewNowRequest(undefined);
    expect(await store.getRenewNowRequest()).toBeUndefined();
  });

  it('keeps one first CA root when two clients start a ring at once, with its sealed key', async () => {
    const other = await client();
    const [mine, theirs] = await Promise.all([store.initCaRoots({ ...root('r1', 'active', 1), keyFile: '', sealedKey: 'v1:sealed' }), other.initCaRoots(root('r2', 'active', 1))]);
    expect(mine).toEqual(theirs);
    expect(mine).toHaveLength(1);
    expect(await store.initCaRoots(root('r3', 'active', 2))).toEqual(mine);
    if (mine[0]?.id === 'r1') expect(mine[0]).toMatchObject({ keyFile: '', sealedKey: 'v1:sealed' });
  });

  it('adds ticket secrets once per key id (one of two racing clients wins), keeps the newest two, newest first', async () => {
    const secret = (keyId: number, by: string) => ({ keyId, secret: `${by}-${keyId}`, createdAt: keyId });
    const other = await client();
    expect(await store.listTicketSecrets()).toEqual([]);
    const won = await Promise.all([store.addTicketSecret(secret(1, 'a')), other.addTicketSecret(secret(1, 'b'))]);
    expect(won.filter(Boolean)).toHaveLength(1);
    const first = await other.listTicketSecrets();
    expect(first).toEqual([secret(1, won[0] ? 'a' : 'b')]);
    expect(await store.addTicketSecret(secret(1, 'c'))).toBe(false);
    for (const keyId of [2, 3, 4, 10, 11]) expect(await store.addTicketSecret(secret(keyId, 'a'))).toBe(true);
    expect(await (await client()).listTicketSecrets()).toEqual([secret(11, 'a'), secret(10, 'a')]);
  });

  it('keeps quarantines for the next client, replaces one set again, and releases one once', async () => {
    await store.quarantine({ spiffeId: ID, reason: 'exfiltration', actor: 'alice', since: 1 });
    await store.quarantine({ spiffeId: ID2, reason: 'hold', actor: 'bob', since: 2, until: 9 });
    await store.quarantine({ spiffeId: ID, reason: 'still', actor: 'carol', since: 3 });
    const next = await client();
    expect(await next.listQuarantines()).toEqual([
      { spiffeId: ID2, reason: 'hold', actor: 'bob', since: 2, until: 9 },
      { spiffeId: ID, reason: 'still', actor: 'carol', since: 3 },
    ]);
    expect(await next.release(ID)).toEqual({ spiffeId: ID, reason: 'still', actor: 'carol', since: 3 });
    expect(await store.release(ID)).toBeUndefined();
    expect((await store.listQuarantines()).map((q) => q.spiffeId)).toEqual([ID2]);
  });

  it('keeps MCP tool pins for the next client by server and tool, replacing one put again (pending version included)', async () => {
    const h = (c: string) => c.repeat(64);
    const server = 'spiffe://td/ns/a/sa/tools';
    await store.putToolPin({ server, tool: 'search', hash: h('a'), pinnedAt: 1, pinnedBy: 'first-use' });
    await store.putToolPin({ server: 'api.example.com:443', tool: 'a/b:c', hash: '', pinnedAt: 2, pinnedBy: '', pending: { hash: h('b'), seenAt: 2, flags: ['invisible-unicode@1'], action: 'deny' } });
    await store.putToolPin({ server, tool: 'search', hash: h('a'), pinnedAt: 1, pinnedBy: 'first-use', pending: { hash: h('c'), seenAt: 3, flags: [], action: 'alert' } });
    await store.putToolPin({ server, tool: 'fetch', hash: h('d'), pinnedAt: 4, pinnedBy: 'alice' });
    const next = await client();
    expect(await next.listToolPins()).toEqual([
      { server: 'api.example.com:443', tool: 'a/b:c', hash: '', pinnedAt: 2, pinnedBy: '', pending: { hash: h('b'), seenAt: 2, flags: ['invisible-unicode@1'], action: 'deny' } },
      { server, tool: 'fetch', hash: h('d'), pinnedAt: 4, pinnedBy: 'alice' },
      { server, tool: 'search', hash: h('a'), pinnedAt: 1, pinnedBy: 'first-use', pending: { hash: h('c'), seenAt: 3, flags: [], action: 'alert' } },
    ]);
    // Accepted: the pending version is gone.
    await next.putToolPin({ server, tool: 'search', hash: h('c'), pinnedAt: 5, pinnedBy: 'bob' });
    expect((await store.listToolPins()).find((p) => p.tool === 'search')).toEqual({ server, tool: 'search', hash: h('c'), pinnedAt: 5, pinnedBy: 'bob' });
  });

  it('reports a tool pin put by one client to the watch of another (etcd; the embedded store has one client)', async () => {
    const seen: StoreEvent[] = [];
    const watch = await (await client()).watch((e) => void seen.push(e), () => undefined);
    try {
      const pin = { server: 'api.example.com:443', tool: 'search', hash: 'e'.repeat(64), pinnedAt: 1, pinnedBy: 'first-use' };
      await store.putToolPin(pin);
      if (backend.name !== 'EtcdStore') return;
      for (let i = 0; i < 100 && !seen.some((e) => e.kind === 'tool-pin'); i++) await new Promise((r) => setTimeout(r, 20));
      expect(seen.filter((e) => e.kind === 'tool-pin')).toEqual([{ kind: 'tool-pin', pin }]);
    } finally {
      await watch.close();
    }
  });

  it('reports a baseline written and reset by one client to the watch of another (etcd; the embedded store has one client)', async () => {
    const seen: StoreEvent[] = [];
    const watch = await (await client()).watch((e) => void seen.push(e), () => undefined);
    try {
      const record = { spiffeId: ID, startedAt: 1, updatedAt: 2, windowMs: 2_000, flows: [{ flow: 'api.example.com:443 GET /v1/{id}', normal: true, firstSeen: 1, lastSeen: 2, calls: 3, peak: 1 }], droppedFlows: 0 };
      await store.putBaselines([record]);
      await store.deleteBaseline(ID);
      if (backend.name !== 'EtcdStore') return;
      for (let i = 0; i < 100 && seen.filter((e) => e.kind === 'baseline').length < 2; i++) await new Promise((r) => setTimeout(r, 20));
      expect(seen.filter((e) => e.kind === 'baseline')).toEqual([{ kind: 'baseline', spiffeId: ID, record }, { kind: 'baseline', spiffeId: ID }]);
    } finally {
      await watch.close();
    }
  });

  it('keeps selector quarantines (segment, label with a prefixed key) beside identities, and releases one by its key', async () => {
    await store.quarantine({ spiffeId: 'segment:workers', reason: 'worm', actor: 'alice', since: 1 });
    await store.quarantine({ spiffeId: 'label:app.kubernetes.io/team=red', reason: 'drill', actor: 'bob', since: 2 });
    await store.quarantine({ spiffeId: ID, reason: 'one', actor: 'bob', since: 3 });
    expect((await (await client()).listQuarantines()).map((q) => q.spiffeId)).toEqual(['segment:workers', 'label:app.kubernetes.io/team=red', ID]);
    expect(await store.release('label:app.kubernetes.io/team=red')).toMatchObject({ reason: 'drill' });
    expect((await (await client()).listQuarantines()).map((q) => q.spiffeId)).toEqual(['segment:workers', ID]);
  });

  it('keeps behaviour baselines for the next client: put as a batch, replaced per identity, deleted once', async () => {
    const flow = (f: string, normal: boolean) => ({ flow: f, normal, firstSeen: 1, lastSeen: 2, calls: 3, peak: 2 });
    const a = { spiffeId: ID, startedAt: 1, updatedAt: 2, windowMs: 60_000, flows: [flow('spiffe://td/ns/b/sa/b GET /v1/a/{id}', true)], droppedFlows: 0 };
    const b = { spiffeId: ID2, startedAt: 3, updatedAt: 4, windowMs: 2_000, flows: [flow('api.example.com:443 POST /mcp tool=search', false)], droppedFlows: 5 };
    await store.putBaselines([b, a]);
    await store.putBaselines([]);
    const next = await client();
    expect(await next.listBaselines()).toEqual([a, b].sort((x, y) => (x.spiffeId < y.spiffeId ? -1 : 1)));
    const accepted = { ...b, updatedAt: 9, flows: [{ ...flow('api.example.com:443 POST /mcp tool=search', true), acceptedBy: 'alice' }] };
    await next.putBaselines([accepted]);
    expect((await store.listBaselines()).find((r) => r.spiffeId === ID2)).toEqual(accepted);
    // More than one etcd transaction holds.
    const many = Array.from({ length: 130 }, (_, i) => ({ ...a, spiffeId: `spiffe://td/ns/many/sa/a${String(i).padStart(3, '0')}` }));
    await store.putBaselines(many);
    expect((await next.listBaselines()).length).toBe(132);
    // Large baselines (5,000 flows each, the most a setting allows): more than etcd takes in one request.
    const large = Array.from({ length: 4 }, (_, i) => ({ ...a, spiffeId: `spiffe://td/ns/large/sa/a${i}`, flows: Array.from({ length: 5_000 }, (_, f) => flow(`api${f}.example.com:443 POST /v1/things/{id}/items tool=search_everything`, true)) }));
    await store.putBaselines(large);
    expect((await next.listBaselines()).filter((r) => r.spiffeId.includes('/ns/large/')).map((r) => r.flows.length)).toEqual([5_000, 5_000, 5_000, 5_000]);
    // etcd's limit is in bytes: two records under 1 MiB of characters together, but over 1.5 MiB of UTF-8.
    const wide = Array.from({ length: 2 }, (_, i) => ({ ...a, spiffeId: `spiffe://td/ns/wide/sa/a${i}`, flows: Array.from({ length: 1_700 }, (_, f) => flow(`api${f}.example.com:443 POST /v1/${'工'.repeat(200)}`, true)) }));
    expect(wide.reduce((n, r) => n + JSON.stringify(r).length, 0)).toBeLessThan(1024 * 1024);
    expect(wide.reduce((n, r) => n + Buffer.byteLength(JSON.stringify(r)), 0)).toBeGreaterThan(1.5 * 1024 * 1024);
    await store.putBaselines(wide);
    expect((await next.listBaselines()).filter((r) => r.spiffeId.includes('/ns/wide/')).map((r) => r.flows.length)).toEqual([1_700, 1_700]);
    expect(await store.deleteBaseline(ID)).toBe(true);
    expect(await next.deleteBaseline(ID)).toBe(false);
    expect((await next.listBaselines()).some((r) => r.spiffeId === ID)).toBe(false);
  });

  it('keeps incident records: replaced by id, listed newest first, the open one of a target found', async () => {
    const decision = { at: 5, decisionId: 'd1', direction: 'outbound', source: ID, destination: ID2, host: 'b.ns', method: 'GET', path: '/v1/a', verdict: 'allow' as const, policy: 'p', reason: 'allowed' };
    const first = { id: 'inc-20261204T100000Z-aaaa', target: ID, reason: 'exfiltration', openedBy: 'alice', openedByRole: 'responder', openedAt: 1, matched: [ID], matchedTotal: 1, before: [decision] };
    const second = { id: 'inc-20261204T110000Z-bbbb', target: 'segment:workers', reason: 'worm', openedBy: 'bob', openedByRole: 'admin', openedAt: 2, until: 9, matched: [], matchedTotal: 0, before: [] };
    await store.saveIncident(first);
    await store.saveIncident(second);
    const next = await client();
    expect(await next.getIncident(first.id)).toEqual(first);
    expect(await next.getIncident('inc-none')).toBeUndefined();
    expect((await next.listIncidents(10)).map((r) => r.id)).toEqual([second.id, first.id]);
    expect((await next.listIncidents(1)).map((r) => r.id)).toEqual([second.id]);
    expect(await next.openIncidentOf(ID)).toEqual(first);
    const released = { ...first, releasedAt: 7, releasedBy: 'carol', after: [{ ...decision, at: 6, verdict: 'deny' as const, policy: '', reason: 'quarantined' }] };
    await next.saveIncident(released);
    expect(await store.openIncidentOf(ID)).toBeUndefined();
    expect(await store.getIncident(first.id)).toEqual(released);
    expect(await store.openIncidentOf('segment:workers')).toEqual(second);
  });

  it('appends policy versions with their audit event, refuses a version stored first by another client', async () => {
    const version = (v: number) => ({ version: v, entries: `[${v}]`, createdAt: v, actor: 'alice', action: 'apply', summary: `s${v}` });
    const audit = (v: number) => ({ at: v, actor: 'alice', action: 'policy.apply', target: `version ${v}`, detail: '{}' });
    expect(await store.latestPolicyVersion()).toBeUndefined();
    await store.appendPolicyVersion(version(1), audit(1));
    await store.appendPolicyVersion(version(2), audit(2));
    await expect((await client()).appendPolicyVersion(version(2), audit(3))).rejects.toMatchObject({ code: ErrorCode.Conflict });
    expect(await store.latestPolicyVersion()).toEqual(version(2));
    expect(await store.getPolicyVersion(1)).toEqual(version(1));
    expect(await store.getPolicyVersion(9)).toBeUndefined();
    expect(await store.listPolicyVersions(10)).toEqual([2, 1].map((v) => ({ version: v, createdAt: v, actor: 'alice', action: 'apply', summary: `s${v}` })));
    expect((await store.listPolicyVersions(1)).map((v) => v.version)).toEqual([2]);
    // Neither half of the refused append was kept.
    expect((await store.listAuditEvents(10)).map((e) => e.target)).toEqual(['version 2', 'version 1']);
  });

  it('revokes an API token by name once (the first time kept), lists tokens by name, and knows no other name', async () => {
    await store.addApiToken({ hash: 'ha', name: 'ci', role: 'editor', createdAt: 1 });
    await store.addApiToken({ hash: 'hb', name: 'bot', role: 'viewer', createdAt: 2 });
    expect(await store.revokeApiToken('ci', 100)).toEqual({ hash: 'ha', name: 'ci', role: 'editor', createdAt: 1, revokedAt: 100 });
    expect(await (await client()).revokeApiToken('ci', 200)).toMatchObject({ revokedAt: 100 });
    expect(await store.findApiToken('ha')).toMatchObject({ revokedAt: 100 });
    expect(await store.findApiToken('hb')).toEqual({ hash: 'hb', name: 'bot', role: 'viewer', createdAt: 2 });
    expect(await store.revokeApiToken('nobody', 100)).toBeUndefined();
    expect((await store.listApiTokens()).map((t) => [t.name, t.revokedAt])).toEqual([['bot', undefined], ['ci', 100]]);
  });

  it('revokes the admin certificates of a name, each once, and counts them', async () => {
    const cert = (serial: string, name: string) => ({ serial, name, role: 'editor' as const, createdAt: 1, notAfter: 10_000 });
    await store.addAdminCertificate(cert('0a', 'dave'));
    await store.addAdminCertificate(cert('0b', 'dave'));
    await store.addAdminCertificate(cert('0c', 'erin'));
    expect(await store.revokeAdminCertificates('dave', 50)).toBe(2);
    expect(await (await client()).revokeAdminCertificates('dave', 60)).toBe(2);
    expect(await store.findAdminCertificate('0a')).toMatchObject({ revokedAt: 50 });
    expect(await store.findAdminCertificate('0c')).toEqual(cert('0c', 'erin'));
    expect(await store.revokeAdminCertificates('nobody', 50)).toBe(0);
  });

  it('keeps API token names unique, admin certificates by serial, and the audit trail newest first', async () => {
    await store.addApiToken({ hash: 't1', name: 'ci', role: 'editor', createdAt: 1 });
    await expect(store.addApiToken({ hash: 't2', name: 'ci', role: 'admin', createdAt: 2 })).rejects.toMatchObject({ code: ErrorCode.Conflict });
    expect(await store.findApiToken('t1')).toEqual({ hash: 't1', name: 'ci', role: 'editor', createdAt: 1 });
    expect(await store.findApiToken('t2')).toBeUndefined();
    await store.addAdminCertificate({ serial: 'ab', name: 'alice', role: 'admin', createdAt: 1, notAfter: 9 });
    expect(await store.findAdminCertificate('ab')).toEqual({ serial: 'ab', name: 'alice', role: 'admin', createdAt: 1, notAfter: 9 });
    for (const at of [5, 6, 7]) await store.addAuditEvent({ at, actor: 'a', action: 'x', target: `t${at}`, detail: '{}' });
    expect((await store.listAuditEvents(2)).map((e) => e.at)).toEqual([7, 6]);
  });
});
