// Issue 12: a replica that cannot reach etcd keeps deciding from the state it holds (fail closed
// stays fail closed: nothing revoked comes back), refuses changes with a clear error, reports
// itself not ready past storeStaleAfter and counts the staleness; when etcd answers again, so does it.
import { readFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import { AuthorizationServiceClient, AuthorizeRequest, Direction, Verdict } from '@airlock/proto/authorization/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../control-plane/src/ca/ca.ts';
import { makeCsr } from '../control-plane/src/ca/test-csr.ts';
import type { RunningControlPlane } from '../control-plane/src/main.ts';
import { adminFetch, CLIENT_OPTIONS, controlPlaneChannel, TD } from '../control-plane/src/testing/test-control-plane.ts';
import { startEtcd, type EtcdCluster } from './support/etcd.ts';
import { HEALTH_PROTO, healthCheck, serviceClient } from './support/grpc-health.ts';
import { DEMO_TO_API_POLICY as POLICY, startReplica, writeSharedCa } from './support/replicas.ts';

const AGENT = `spiffe://${TD}/ns/demo/sa/researcher`;
const REVOKED = `spiffe://${TD}/ns/demo/sa/intruder`;

describe('a replica cut off from etcd', () => {
  let etcd: EtcdCluster;
  let dir: string;
  let root: string;
  let cp: RunningControlPlane;
  const clients: { close(): void }[] = [];

  /** One Authorize as the sidecar of `id` asks it (mTLS with an SVID of the shared CA). */
  const decide = (id: string): Promise<string> => {
    const ca = CertificateAuthority.fromOperator(TD, readFileSync(join(dir, 'tls.crt'), 'utf8'), readFileSync(join(dir, 'tls.key'), 'utf8'));
    const { csrPem, keyPem } = makeCsr();
    const client = new AuthorizationServiceClient(`127.0.0.1:${cp.grpcPort}`, controlPlaneChannel(root, { certPem: ca.issueSvid(csrPem, id, 600_000).chainPem, keyPem }), CLIENT_OPTIONS);
    clients.push(client);
    const req = AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: id, destinationHost: 'api.example.com', destinationPort: 443, method: 'CONNECT', path: '' });
    return new Promise((resolve) => client.authorize(req, new Metadata(), { deadline: Date.now() + 2000 }, (err, res) => resolve(err !== null ? `error: ${err.message}` : res.verdict === Verdict.VERDICT_ALLOW ? 'allow' : `deny: ${res.reason}`)));
  };
  const ready = async (): Promise<{ status: number; reason: string }> => {
    const res = await fetch(`http://127.0.0.1:${cp.httpPort}/readyz`);
    return { status: res.status, reason: ((await res.json()) as { reason?: string }).reason ?? '' };
  };
  /** grpc.health.v1.Health on the gRPC port, as a load balancer asks it: the same readiness. */
  const grpcHealth = (): Promise<string> => {
    const client = serviceClient(HEALTH_PROTO, 'grpc.health.v1.Health', cp.grpcPort, root);
    clients.push(client);
    return healthCheck(client, '');
  };
  const staleness = async (): Promise<number> => Number(/^airlock_store_last_contact_age_seconds(?:\{[^}]*\})? ([\d.e+-]+)$/m.exec(await (await fetch(`http://127.0.0.1:${cp.httpPort}/metrics`)).text())?.[1]);
  const until = async (what: string, probe: () => Promise<boolean>): Promise<void> => {
    const end = Date.now() + 30_000;
    while (!(await probe())) {
      if (Date.now() > end) throw new Error(`not within 30 s: ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  beforeAll(async () => {
    etcd = await startEtcd(1);
    dir = mkdtempSync(join(tmpdir(), 'airlock-cut-off-'));
    root = writeSharedCa(dir);
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
    cp = await startReplica({ etcd, dir, trustDomain: TD, policyFile: join(dir, 'policy.yaml'), flags: { storeStaleAfter: '2s' } });
    const revoked = await adminFetch(cp, '/v1/agents/revoke', { method: 'POST', headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ identity: REVOKED }) }, root);
    expect(revoked.status).toBe(200);
  }, 60_000);
  afterAll(async () => {
    for (const c of clients) c.close();
    for (const m of etcd.members) m.process.kill('SIGCONT');
    await cp.close();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps deciding from what it holds, refuses changes, and is not ready until etcd answers again', async () => {
    expect((await ready()).status).toBe(200);
    expect(await grpcHealth()).toBe('SERVING');
    expect(await decide(AGENT)).toBe('allow');
    expect(await decide(REVOKED)).toMatch(/^deny: identity revoked/);

    for (const m of etcd.members) m.process.kill('SIGSTOP');
    // Decisions go on from memory, the revocation included.
    expect(await decide(AGENT)).toBe('allow');
    expect(await decide(REVOKED)).toMatch(/^deny: identity revoked/);
    // A change cannot be stored: a clear refusal, not a hang.
    const apply = await adminFetch(cp, '/v1/policy/apply', { method: 'POST', headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ yaml: POLICY }) }, root);
    expect(apply.status).toBe(503);
    expect(await apply.json()).toMatchObject({ error: 'store_unavailable' });
    await until('not ready', async () => (await ready()).status === 503);
    expect((await ready()).reason).toMatch(/the store has not answered for \d+ s/);
    expect(await staleness()).toBeGreaterThan(2);
    expect(await grpcHealth()).toBe('NOT_SERVING');

    for (const m of etcd.members) m.process.kill('SIGCONT');
    await until('ready again', async () => (await ready()).status === 200);
    expect(await staleness()).toBeLessThan(2);
    expect(await grpcHealth()).toBe('SERVING');
    expect(await decide(REVOKED)).toMatch(/^deny: identity revoked/);
  }, 120_000);
});
