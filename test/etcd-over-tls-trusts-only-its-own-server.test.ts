import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningControlPlane } from '../control-plane/src/main.ts';
import { adminFetch, TD } from '../control-plane/src/testing/test-control-plane.ts';
import { createTestCa } from '../sidecar/src/testing/certs.ts';
import { startEtcd, type EtcdCluster } from './support/etcd.ts';
import { startReplica, writeSharedCa } from './support/replicas.ts';

/**
 * A real etcd serving its clients over TLS with client-certificate authentication, as the Helm chart's
 * `store.etcd.tlsSecret` sets it up: a replica reaches it only with the etcd CA and a client
 * certificate, and refuses a server its CA did not issue, or one issued for another name.
 */
describe('etcd over TLS', () => {
  let dir: string;
  let etcd: EtcdCluster;
  let impostor: EtcdCluster;
  const replicas: RunningControlPlane[] = [];
  const file = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text, { mode: 0o600 });
    return path;
  };
  let files: { ca: string; cert: string; key: string; foreignCa: string };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-etcd-tls-'));
    writeSharedCa(dir);
    const etcdCa = createTestCa('etcd CA');
    const server = etcdCa.issue({ ips: ['127.0.0.1'] });
    const client = etcdCa.issue({ dnsNames: ['airlock-control-plane'] });
    // Issued by the same CA, but for another host: a stolen certificate of another etcd service.
    const elsewhere = etcdCa.issue({ dnsNames: ['etcd.elsewhere.example'] });
    files = { ca: file('etcd-ca.pem', etcdCa.certPem), cert: file('client.pem', client.certPem), key: file('client.key', client.keyPem), foreignCa: file('foreign-ca.pem', createTestCa('Foreign CA').certPem) };
    [etcd, impostor] = await Promise.all([
      startEtcd(1, { tls: { certFile: file('server.pem', server.certPem), keyFile: file('server.key', server.keyPem), clientCaFile: files.ca } }),
      startEtcd(1, { tls: { certFile: file('elsewhere.pem', elsewhere.certPem), keyFile: file('elsewhere.key', elsewhere.keyPem), clientCaFile: files.ca } }),
    ]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.close()));
    await Promise.all([etcd.stop(), impostor.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  const start = async (cluster: EtcdCluster, flags: Record<string, string>): Promise<RunningControlPlane> => {
    const replica = await startReplica({ etcd: cluster, dir, trustDomain: TD, flags });
    replicas.push(replica);
    return replica;
  };

  it('is reached with the etcd CA and a client certificate, and keeps state there', async () => {
    const cp = await start(etcd, { etcdCaFile: files.ca, etcdCertFile: files.cert, etcdKeyFile: files.key });
    const res = await adminFetch(cp, '/v1/join-tokens', { method: 'POST', headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ identity: `spiffe://${TD}/ns/demo/sa/agent` }) });
    expect(res.status).toBe(201);
    const listed = await adminFetch(cp, '/v1/join-tokens', { headers: { authorization: `Bearer ${cp.adminToken}` } });
    expect(((await listed.json()) as { items: unknown[] }).items).toHaveLength(1);
  });

  it.each<[string, () => EtcdCluster, () => Record<string, string>]>([
    ['a server whose certificate another CA issued', () => etcd, () => ({ etcdCaFile: files.foreignCa, etcdCertFile: files.cert, etcdKeyFile: files.key })],
    ['a server with a certificate of the right CA for another name', () => impostor, () => ({ etcdCaFile: files.ca, etcdCertFile: files.cert, etcdKeyFile: files.key })],
    ['no client certificate (etcd refuses the client)', () => etcd, () => ({ etcdCaFile: files.ca })],
  ])('refuses to start against %s: the store is unavailable, nothing is served', async (_name, cluster, flags) => {
    await expect(start(cluster(), flags())).rejects.toMatchObject({ code: 'AIRLOCK_STORE_UNAVAILABLE', message: expect.stringContaining('cannot reach etcd at') as unknown });
  });

  it('refuses to speak plain HTTP to it', async () => {
    const plain = { ...etcd, endpoints: etcd.endpoints.map((e) => e.replace('https://', 'http://')) };
    await expect(start(plain, {})).rejects.toMatchObject({ code: 'AIRLOCK_STORE_UNAVAILABLE' });
  });
});
