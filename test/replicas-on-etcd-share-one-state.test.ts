// Issue 12: control-plane replicas on a real etcd share one state. A join token is spent once
// whichever replica it is raced to; a replica started later, or restarted with an empty data dir,
// holds the policy, tokens and revocations the others wrote; and a running replica follows what
// another writes (an agent registered, a policy applied, an identity revoked) without a restart.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { IdentityServiceClient } from '@airlock/proto/identity/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningControlPlane } from '../control-plane/src/main.ts';
import { adminFetch } from '../control-plane/src/testing/test-control-plane.ts';
import { CONTROL_PLANE_CHANNEL_OPTIONS } from '../sidecar/src/controlplane/credentials.ts';
import { newKeyAndCsr } from '../sidecar/src/identity/key-and-csr.ts';
import { startEtcd, type EtcdCluster } from './support/etcd.ts';
import { startReplica as startSharedReplica, writeSharedCa } from './support/replicas.ts';

const TD = 'airlock.test';
const AGENT = `spiffe://${TD}/ns/demo/sa/researcher`;
const TOOL = `spiffe://${TD}/ns/demo/sa/tool`;
const OTHER = `spiffe://${TD}/ns/demo/sa/other`;
const POLICY = `apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: researchers }
spec: { selector: { namespace: demo, serviceAccounts: [researcher] } }
`;

describe('control-plane replicas on etcd share one state', () => {
  let etcd: EtcdCluster;
  let dir: string;
  let root: string;
  const replicas: RunningControlPlane[] = [];

  const startReplica = async (o: { policyFile?: string } = {}): Promise<RunningControlPlane> => {
    const cp = await startSharedReplica({ etcd, dir, trustDomain: TD, ...o });
    replicas.push(cp);
    return cp;
  };

  const admin = async (cp: RunningControlPlane, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
    const res = await adminFetch(cp, path, { method: body === undefined ? 'GET' : 'POST', headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) }, root);
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };

  /** SignCertificate with a join token, as a joining sidecar sends it: the gRPC status it got. */
  const join_ = async (cp: RunningControlPlane, joinToken: string): Promise<status> => {
    const { csrPem } = await newKeyAndCsr();
    const client = new IdentityServiceClient(`127.0.0.1:${cp.grpcPort}`, credentials.createSsl(Buffer.from(root), null, null, { checkServerIdentity: () => undefined }), CONTROL_PLANE_CHANNEL_OPTIONS);
    try {
      return await new Promise<status>((resolve) => client.signCertificate({ csrPem, joinToken, inboundAddress: '127.0.0.1:9' }, (err: ServiceError | null) => resolve(err === null ? status.OK : err.code)));
    } finally {
      client.close();
    }
  };

  beforeAll(async () => {
    etcd = await startEtcd(1);
    dir = mkdtempSync(join(tmpdir(), 'airlock-replicas-'));
    root = writeSharedCa(dir);
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
  }, 60_000);
  afterAll(async () => {
    for (const cp of replicas) await cp.close();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('spends a join token once, whichever of two replicas it is raced to', async () => {
    const a = await startReplica({ policyFile: join(dir, 'policy.yaml') });
    const b = await startReplica();
    for (let round = 0; round < 5; round++) {
      const created = await admin(a, '/v1/join-tokens', { identity: AGENT });
      expect(created.status).toBe(201);
      const token = created.json.token as string;
      const results = await Promise.all([join_(a, token), join_(b, token), join_(b, token), join_(a, token)]);
      expect(results.filter((s) => s === status.OK)).toHaveLength(1);
      expect(results.filter((s) => s === status.UNAUTHENTICATED)).toHaveLength(3);
    }
    // B accepts the admin token A made (its hash is in etcd), and lists the tokens A minted, all used.
    const listed = await admin(b, '/v1/join-tokens');
    expect(listed.status).toBe(200);
    expect((listed.json.items as { status: string }[]).map((t) => t.status)).toEqual(Array(5).fill('used'));
  });

  it('a replica started later, with an empty data dir, holds the policy version, agents and revocations the others wrote', async () => {
    const [a] = replicas as [RunningControlPlane];
    expect((await admin(a, '/v1/agents/revoke', { identity: AGENT })).status).toBe(200);
    const fromA = await admin(a, '/v1/policy');
    const c = await startReplica();
    const fromC = await admin(c, '/v1/policy');
    expect(fromC.json.version).toBe(fromA.json.version);
    expect(fromC.json.version).toBeGreaterThan(0);
    expect(fromC.json.documents).toEqual(fromA.json.documents);
    expect(((await admin(c, '/v1/agents')).json.items as { spiffeId: string }[]).map((x) => x.spiffeId)).toEqual([AGENT]);
    // Revoked through A: C refuses to renew it, as A does.
    const again = await admin(c, '/v1/join-tokens', { identity: AGENT });
    expect(await join_(c, again.json.token as string)).toBe(status.PERMISSION_DENIED);
  });

  it('a running replica follows what another writes: an agent registered, a policy applied, an identity revoked', async () => {
    const [a, b] = replicas as [RunningControlPlane, RunningControlPlane];
    /** Retries `probe` until it holds (the watch delivers in milliseconds; 10 s bounds a broken one). */
    const eventually = async (probe: () => Promise<boolean>): Promise<void> => {
      const until = Date.now() + 10_000;
      while (!(await probe())) {
        if (Date.now() > until) throw new Error('the other replica did not follow within 10 s');
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const explain = async (cp: RunningControlPlane, from: string, to: string) => (await admin(cp, '/v1/explain', { from, to, method: 'GET', path: '/' })).json as { destination: string; reason: string };

    // Registered through B: A resolves its mesh host to it (no longer an external host).
    expect((await admin(a, '/v1/explain', { from: OTHER, to: 'tool.demo', method: 'GET', path: '/' })).json).toMatchObject({ destination: '' });
    const token = await admin(b, '/v1/join-tokens', { identity: TOOL });
    expect(await join_(b, token.json.token as string)).toBe(status.OK);
    await eventually(async () => (await explain(a, OTHER, 'tool.demo')).destination === TOOL);

    // Applied through A: B decides with the new version.
    const applied = await admin(a, '/v1/policy/apply', { yaml: `${POLICY}---\napiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: tools }\nspec: { selector: { namespace: demo, serviceAccounts: [tool] } }\n` });
    expect(applied.status).toBe(200);
    await eventually(async () => (await admin(b, '/v1/policy')).json.version === applied.json.version);

    // Quarantined through A: B denies calls naming it; released through B: A decides by policy again.
    expect((await admin(a, '/v1/agents/quarantine', { identity: OTHER, reason: 'incident' })).status).toBe(200);
    await eventually(async () => (await explain(b, OTHER, 'api.example.com')).reason === 'quarantined');
    expect((await admin(b, '/v1/agents/release', { identity: OTHER })).status).toBe(200);
    await eventually(async () => (await explain(a, OTHER, 'api.example.com')).reason !== 'quarantined');

    // A segment quarantined through A: B denies its member; released through B, the incident A opened is closed.
    const bySegment = await admin(a, '/v1/agents/quarantine', { segment: 'tools', reason: 'worm' });
    expect(bySegment.json).toMatchObject({ segment: 'tools', matched: [TOOL] });
    await eventually(async () => (await explain(b, TOOL, 'api.example.com')).reason === 'quarantined');
    expect((await admin(b, '/v1/agents/release', { segment: 'tools' })).json).toMatchObject({ released: true, incident: bySegment.json.incident });
    expect((await admin(a, `/v1/incidents/${String(bySegment.json.incident)}`)).json).toMatchObject({ segment: 'tools', state: 'released', matched: [TOOL] });
    await eventually(async () => (await explain(a, TOOL, 'api.example.com')).reason !== 'quarantined');

    // Revoked through A: B denies every call naming it.
    expect((await explain(b, TOOL, 'api.example.com')).reason).not.toMatch(/revoked/);
    expect((await admin(a, '/v1/agents/revoke', { identity: TOOL })).status).toBe(200);
    await eventually(async () => /revoked/.test((await explain(b, TOOL, 'api.example.com')).reason));
  });
});
