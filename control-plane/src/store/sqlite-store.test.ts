import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteStore } from './sqlite-store.ts';

describe('SqliteStore', () => {
  let dir: string;
  let store: SqliteStore;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-store-'));
    store = SqliteStore.open(dir);
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('consumes a join token once, then reports it used', async () => {
    await store.insertJoinToken({ hash: 'h1', spiffeId: 'spiffe://td/ns/a/sa/b', expiresAt: 2000 });
    expect(await store.consumeJoinToken('h1', 1000)).toEqual({ ok: true, spiffeId: 'spiffe://td/ns/a/sa/b', labels: {} });
    expect(await store.consumeJoinToken('h1', 1000)).toEqual({ ok: false, reason: 'used' });
  });

  it('keeps a join token\'s labels, and an agent\'s labels across an upsert without labels (a renewal)', async () => {
    await store.insertJoinToken({ hash: 'h3', spiffeId: 'spiffe://td/ns/a/sa/c', expiresAt: 2000, labels: { team: 'research' } });
    expect(await store.consumeJoinToken('h3', 1000)).toEqual({ ok: true, spiffeId: 'spiffe://td/ns/a/sa/c', labels: { team: 'research' } });
    await store.upsertAgent({ spiffeId: 'spiffe://td/ns/a/sa/c', inboundAddress: '127.0.0.1:1', updatedAt: 1, labels: { team: 'research' } });
    await store.upsertAgent({ spiffeId: 'spiffe://td/ns/a/sa/c', inboundAddress: '127.0.0.1:2', updatedAt: 2 });
    expect(await store.getAgent('spiffe://td/ns/a/sa/c')).toMatchObject({ inboundAddress: '127.0.0.1:2', labels: { team: 'research' } });
    // A new attestation sets them again (here: none).
    await store.upsertAgent({ spiffeId: 'spiffe://td/ns/a/sa/c', inboundAddress: '127.0.0.1:3', updatedAt: 3, labels: {} });
    expect((await store.getAgent('spiffe://td/ns/a/sa/c'))?.labels).toEqual({});
  });

  it('refuses unknown and expired tokens', async () => {
    await store.insertJoinToken({ hash: 'h2', spiffeId: 'spiffe://td/ns/a/sa/b', expiresAt: 2000 });
    expect(await store.consumeJoinToken('nope', 1000)).toEqual({ ok: false, reason: 'unknown' });
    expect(await store.consumeJoinToken('h2', 2000)).toEqual({ ok: false, reason: 'expired' });
  });

  it('upserts agents and keeps state across reopen', async () => {
    await store.upsertAgent({ spiffeId: 'spiffe://td/ns/a/sa/b', inboundAddress: '127.0.0.1:1', updatedAt: 1 });
    await store.upsertAgent({ spiffeId: 'spiffe://td/ns/a/sa/b', inboundAddress: '127.0.0.1:2', updatedAt: 2 });
    await store.recordCertificate({ serial: '01', spiffeId: 'spiffe://td/ns/a/sa/b', notAfter: 5, issuedAt: 1 });
    await store.addAdminTokenHash('adm');
    await store.close();
    store = SqliteStore.open(dir);
    expect(await store.getAgent('spiffe://td/ns/a/sa/b')).toEqual({ spiffeId: 'spiffe://td/ns/a/sa/b', inboundAddress: '127.0.0.1:2', updatedAt: 2, labels: {} });
    expect(await store.listCertificates('spiffe://td/ns/a/sa/b')).toHaveLength(1);
    expect(await store.hasAdminTokenHash('adm')).toBe(true);
    expect(await store.hasAdminTokenHash('other')).toBe(false);
  });

  it('keeps the first revocation of an identity, across reopen', async () => {
    await store.revokeIdentity('spiffe://td/ns/a/sa/b', 10);
    await store.revokeIdentity('spiffe://td/ns/a/sa/b', 20);
    await store.close();
    store = SqliteStore.open(dir);
    expect(await store.listRevokedIdentities()).toEqual([{ spiffeId: 'spiffe://td/ns/a/sa/b', revokedAt: 10 }]);
  });
});
