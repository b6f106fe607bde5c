// Issue 12: replicas on a real 3-member etcd cluster. Killing the etcd leader loses no acknowledged
// write and lets nothing revoked through; with quorum gone (a second member stopped) changes are
// refused with a clear error while decisions go on; with quorum back they are accepted again; and a
// replica started after everything else has stopped finds the state intact.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningControlPlane } from '../control-plane/src/main.ts';
import { adminFetch, TD } from '../control-plane/src/testing/test-control-plane.ts';
import { startEtcd, type EtcdCluster, type EtcdMember } from './support/etcd.ts';
import { startReplica, writeSharedCa } from './support/replicas.ts';

const POLICY = `apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: demo }
spec: { selector: { namespace: demo } }
`;
const segment = (name: string): string => `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: ${name} }\nspec: { selector: { namespace: ${name} } }\n`;
const id = (sa: string): string => `spiffe://${TD}/ns/demo/sa/${sa}`;

describe('replicas on a 3-member etcd cluster losing members', () => {
  let etcd: EtcdCluster;
  let dir: string;
  let root: string;
  const replicas: RunningControlPlane[] = [];

  const admin = async (cp: RunningControlPlane, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
    const res = await adminFetch(cp, path, { method: body === undefined ? 'GET' : 'POST', headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) }, root);
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  /** Retries a change until the store acknowledges it (200): during an election it may be refused (503). */
  const acknowledged = async (cp: RunningControlPlane, path: string, body: unknown): Promise<Record<string, unknown>> => {
    const end = Date.now() + 60_000;
    for (;;) {
      const r = await admin(cp, path, body);
      if (r.status === 200) return r.json;
      expect(r.json).toMatchObject({ error: 'store_unavailable' });
      if (Date.now() > end) throw new Error(`${path} not acknowledged within 60 s`);
      await new Promise((res) => setTimeout(res, 200));
    }
  };
  const revokedOn = async (cp: RunningControlPlane, who: string): Promise<boolean> =>
    /revoked/.test(String((await admin(cp, '/v1/explain', { from: who, to: 'api.example.com:443', method: 'GET', path: '/' })).json.reason));
  const until = async (what: string, probe: () => Promise<boolean>): Promise<void> => {
    const end = Date.now() + 30_000;
    while (!(await probe())) {
      if (Date.now() > end) throw new Error(`not within 30 s: ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  /** The member etcd's own status names as leader. */
  const leader = async (alive: readonly EtcdMember[]): Promise<EtcdMember> => {
    const statuses = await Promise.all(alive.map(async (m) => ({ m, s: (await (await fetch(`${m.clientUrl}/v3/maintenance/status`, { method: 'POST', body: '{}' })).json()) as { header: { member_id: string }; leader: string } })));
    const found = statuses.find(({ s }) => s.header.member_id === s.leader);
    if (found === undefined) throw new Error('no etcd member is leader');
    return found.m;
  };

  beforeAll(async () => {
    etcd = await startEtcd(3);
    dir = mkdtempSync(join(tmpdir(), 'airlock-etcd-loss-'));
    root = writeSharedCa(dir);
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
    replicas.push(await startReplica({ etcd, dir, trustDomain: TD, policyFile: join(dir, 'policy.yaml') }));
    replicas.push(await startReplica({ etcd, dir, trustDomain: TD }));
  }, 60_000);
  afterAll(async () => {
    for (const m of etcd.members) m.process.kill('SIGCONT');
    for (const cp of replicas) await cp.close();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('loses no acknowledged write and lets nothing revoked through, refuses changes without quorum, and keeps it all across a restart', async () => {
    const [a, b] = replicas as [RunningControlPlane, RunningControlPlane];
    await acknowledged(a, '/v1/agents/revoke', { identity: id('before') });
    const v1 = Number((await acknowledged(a, '/v1/policy/apply', { yaml: `${POLICY}---\n${segment('one')}` })).version);
    await until('B follows', async () => (await revokedOn(b, id('before'))) && (await admin(b, '/v1/policy')).json.version === v1);

    // The leader dies: a new one is elected among the other two; what was acknowledged stays.
    const dead = await leader(etcd.members);
    dead.process.kill('SIGKILL');
    const alive = etcd.members.filter((m) => m !== dead);
    await acknowledged(a, '/v1/agents/revoke', { identity: id('during') });
    await until('B denies the identity revoked through A after the election', () => revokedOn(b, id('during')));
    expect(await revokedOn(b, id('before'))).toBe(true);
    expect((await admin(b, '/v1/policy')).json.version).toBe(v1);

    // A second member stops: no quorum. Changes are refused (no hang, no silent loss); decisions go on.
    const stopped = alive[0] as EtcdMember;
    stopped.process.kill('SIGSTOP');
    const refused = await admin(a, '/v1/policy/apply', { yaml: `${POLICY}---\n${segment('two')}` });
    expect(refused.status).toBe(503);
    expect(refused.json).toMatchObject({ error: 'store_unavailable' });

    // Quorum back: the same change is accepted, and followed.
    stopped.process.kill('SIGCONT');
    const v2 = Number((await acknowledged(a, '/v1/policy/apply', { yaml: `${POLICY}---\n${segment('two')}` })).version);
    expect(v2).toBeGreaterThan(v1);
    await until('B follows the change made after quorum came back', async () => (await admin(b, '/v1/policy')).json.version === v2);

    // Every replica stops; one started afresh (empty data dir) finds the state intact.
    for (const cp of replicas.splice(0)) await cp.close();
    const c = await startReplica({ etcd, dir, trustDomain: TD });
    replicas.push(c);
    expect((await admin(c, '/v1/policy')).json.version).toBe(v2);
    expect(await revokedOn(c, id('before'))).toBe(true);
    expect(await revokedOn(c, id('during'))).toBe(true);
    expect(await revokedOn(c, id('never'))).toBe(false);
  }, 240_000);
});
