import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashToken } from '../control-plane/src/attestation/token-hash.ts';
import type { RunningControlPlane } from '../control-plane/src/main.ts';
import { adminFetch, RESEARCHERS_TO_EXAMPLE, startTestControlPlane, TD, type TestControlPlane } from '../control-plane/src/testing/test-control-plane.ts';
import { startEtcd, type EtcdCluster } from './support/etcd.ts';
import { startReplica, writeSharedCa } from './support/replicas.ts';

const AGENT = `spiffe://${TD}/ns/demo/sa/agent`;

/** The admin token, an API token and a join token of `cp`: the secrets a store thief would want. */
async function mintSecrets(cp: Pick<RunningControlPlane, 'adminUrl' | 'trustBundlePem' | 'adminToken'>): Promise<string[]> {
  const post = async (path: string, body: unknown): Promise<string> => {
    const res = await adminFetch(cp, path, { method: 'POST', headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(res.status).toBe(201);
    return ((await res.json()) as { token: string }).token;
  };
  return [cp.adminToken, await post('/v1/api-tokens', { name: 'reader', role: 'viewer' }), await post('/v1/join-tokens', { identity: AGENT })];
}

/** What reading the store gives a thief: its hashes, never a usable token. `dump` holds every byte read. */
function expectOnlyHashes(dump: string, secrets: readonly string[]): void {
  for (const secret of secrets) {
    expect(secret.length).toBeGreaterThanOrEqual(16);
    expect(dump).not.toContain(secret);
    expect(dump).not.toContain(Buffer.from(secret).toString('base64'));
    // The positive control: the dump is the store the control plane checks tokens against.
    expect(dump).toContain(hashToken(secret));
  }
}

describe('tokens rest in the store only as hashes', () => {
  describe('SQLite (the embedded store)', () => {
    let t: TestControlPlane;
    beforeAll(async () => {
      t = await startTestControlPlane(RESEARCHERS_TO_EXAMPLE, 'airlock-token-rest-');
    });
    afterAll(() => t.close());

    it('keeps no admin, API or join token in the database file or its journal', async () => {
      const secrets = await mintSecrets(t.cp);
      const files = ['airlock.db', 'airlock.db-wal', 'airlock.db-journal'].map((f) => join(t.dataDir, f)).filter((f) => existsSync(f));
      expect(files).toContain(join(t.dataDir, 'airlock.db'));
      expectOnlyHashes(files.map((f) => readFileSync(f).toString('latin1')).join('\n'), secrets);
    });
  });

  describe('etcd (replicas)', () => {
    let etcd: EtcdCluster;
    let dir: string;
    let cp: RunningControlPlane;
    beforeAll(async () => {
      etcd = await startEtcd(1);
      dir = mkdtempSync(join(tmpdir(), 'airlock-token-rest-etcd-'));
      writeSharedCa(dir);
      cp = await startReplica({ etcd, dir, trustDomain: TD });
    }, 60_000);
    afterAll(async () => {
      await cp.close();
      await etcd.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it('keeps no admin, API or join token in any key or value', async () => {
      const secrets = await mintSecrets(cp);
      const client = new Etcd3({ hosts: [...etcd.endpoints] });
      try {
        const all = await client.getAll().buffers();
        const dump = Object.entries(all).map(([k, v]) => `${k}\n${v.toString('latin1')}`).join('\n');
        expectOnlyHashes(dump, secrets);
      } finally {
        client.close();
      }
    });
  });
});
