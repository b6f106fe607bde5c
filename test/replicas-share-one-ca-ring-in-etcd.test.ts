// Issue 12, item 3: with self-made roots, replicas on etcd share one CA ring. Its keys are sealed in
// the store with a key-encryption key every replica holds (never a key file, never the plain key in
// etcd); any replica issues; a ring step made through one replica reaches the others and their
// sidecars' trust bundles; a replica with another key-encryption key cannot start, and says why.
import { randomBytes, X509Certificate } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { IdentityServiceClient, type SignCertificateResponse } from '@airlock/proto/identity/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningControlPlane } from '../control-plane/src/main.ts';
import { adminFetch, TD } from '../control-plane/src/testing/test-control-plane.ts';
import { CONTROL_PLANE_CHANNEL_OPTIONS } from '../sidecar/src/controlplane/credentials.ts';
import { newKeyAndCsr } from '../sidecar/src/identity/key-and-csr.ts';
import { startEtcd, type EtcdCluster } from './support/etcd.ts';
import { startReplica } from './support/replicas.ts';

describe('replicas on etcd share one self-made CA ring', () => {
  let etcd: EtcdCluster;
  let dir: string;
  let kekFile: string;
  const replicas: RunningControlPlane[] = [];

  const admin = async (cp: RunningControlPlane, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
    const res = await adminFetch(cp, path, { method: body === undefined ? 'GET' : 'POST', headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) }, cp.trustBundle());
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  /** An SVID signed by `cp` for a join token it made: the issuing root is what we look at. */
  const svidFrom = async (cp: RunningControlPlane, name: string): Promise<X509Certificate> => {
    const token = (await admin(cp, '/v1/join-tokens', { identity: `spiffe://${TD}/ns/demo/sa/${name}` })).json.token as string;
    const { csrPem } = await newKeyAndCsr();
    const client = new IdentityServiceClient(`127.0.0.1:${cp.grpcPort}`, credentials.createSsl(Buffer.from(cp.trustBundle()), null, null, { checkServerIdentity: () => undefined }), CONTROL_PLANE_CHANNEL_OPTIONS);
    try {
      const res = await new Promise<SignCertificateResponse>((resolve, reject) => client.signCertificate({ csrPem, joinToken: token, inboundAddress: '127.0.0.1:9' }, (err, r) => (err === null ? resolve(r) : reject(err))));
      return new X509Certificate(res.certChainPem);
    } finally {
      client.close();
    }
  };
  const roots = async (cp: RunningControlPlane): Promise<{ id: string; state: string }[]> => (await admin(cp, '/v1/ca')).json.roots as { id: string; state: string }[];
  const until = async (what: string, probe: () => Promise<boolean>): Promise<void> => {
    const end = Date.now() + 20_000;
    while (!(await probe())) {
      if (Date.now() > end) throw new Error(`not within 20 s: ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  beforeAll(async () => {
    etcd = await startEtcd(1);
    dir = mkdtempSync(join(tmpdir(), 'airlock-ring-'));
    kekFile = join(dir, 'kek');
    writeFileSync(kekFile, randomBytes(32).toString('base64'), { mode: 0o600 });
    // Two replicas starting at once: one ring.
    replicas.push(...(await Promise.all(['a', 'b'].map((name) => startReplica({ etcd, dir, trustDomain: TD, kekFile, name })))));
  }, 60_000);
  afterAll(async () => {
    for (const cp of replicas) await cp.close();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('makes one root for replicas started at once, keeps its key sealed in etcd (no key file), and any replica issues from it', async () => {
    const [a, b] = replicas as [RunningControlPlane, RunningControlPlane];
    expect(await roots(a)).toEqual(await roots(b));
    expect((await roots(a)).map((r) => r.state)).toEqual(['active']);
    expect(a.trustBundlePem).toBe(b.trustBundlePem);
    for (const replicaDir of readdirSync(dir).filter((d) => d.startsWith('replica-'))) {
      expect(readdirSync(join(dir, replicaDir, 'data')).filter((f) => f.endsWith('.key'))).toEqual([]);
    }
    const stored = await (await fetch(`${etcd.endpoints[0] ?? ''}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from('/airlock/ca-roots/').toString('base64'), range_end: Buffer.from('/airlock/ca-roots0').toString('base64') }) })).json() as { kvs: { value: string }[] };
    const values = stored.kvs.map((kv) => Buffer.from(kv.value, 'base64').toString('utf8'));
    expect(values).toHaveLength(1);
    expect(values[0]).not.toContain('PRIVATE KEY');
    expect(values[0]).toContain('"sealedKey":"v1:');
    const [fromA, fromB] = [await svidFrom(a, 'one'), await svidFrom(b, 'two')];
    expect(fromA.issuer).toBe(fromB.issuer);
  });

  it('a ring step made through one replica reaches the other: its bundle, then its issuer', async () => {
    const [a, b] = replicas as [RunningControlPlane, RunningControlPlane];
    const before = (await svidFrom(b, 'before')).issuer;
    expect((await admin(a, '/v1/ca/prepare', {})).status).toBe(200);
    await until('B trusts the prepared root', async () => (await roots(b)).some((r) => r.state === 'prepared'));
    expect((await svidFrom(b, 'still')).issuer).toBe(before);
    expect((await admin(a, '/v1/ca/activate', {})).status).toBe(200);
    await until('B issues from the new root', async () => (await svidFrom(b, `after${Date.now()}`)).issuer !== before);
    expect((await roots(b)).map((r) => r.state).sort()).toEqual(['active', 'previous']);
  });

  it('a replica with another key-encryption key cannot start, and says why', async () => {
    const other = join(dir, 'other-kek');
    writeFileSync(other, randomBytes(32).toString('base64'), { mode: 0o600 });
    await expect(startReplica({ etcd, dir, trustDomain: TD, kekFile: other })).rejects.toThrow(/sealed with another caKeyEncryptionKeyFile/);
  });
});
