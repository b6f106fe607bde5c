// Issue 12: replicas on a real 3-member etcd cluster, under continuous traffic through two real
// sidecars given both replicas. Killing the etcd leader loses no acknowledged write and lets nothing
// revoked through; with quorum gone (a second member stopped) changes are refused with a clear error
// while decisions go on; with quorum back they are accepted again; a revocation acknowledged through
// one replica denies every call once the other follows; and a replica started after everything else
// has stopped finds the state intact.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boundPort, closeServer } from '@airlock/common/net';
import { startEchoApp, type EchoBody } from '../cli/src/demo/echo-app.ts';
import { spawnAirlock, waitReady, type AirlockProcess } from '../cli/src/demo/processes.ts';
import type { RunningControlPlane } from '../control-plane/src/main.ts';
import { adminFetch, TD } from '../control-plane/src/testing/test-control-plane.ts';
import { startEtcd, type EtcdCluster, type EtcdMember } from './support/etcd.ts';
import { policyYaml } from './support/mesh.ts';
import { viaProxy } from './support/proxy-client.ts';
import { startReplica, writeSharedCa } from './support/replicas.ts';

const POLICY = `apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: demo }
spec: { selector: { namespace: demo } }
---
${policyYaml('mesh', ['planner', 'researcher'], [{ name: 'planner-to-researcher', from: 'planner', to: 'researcher', methods: ['GET'], paths: ['/v1/*'] }])}`;
const segment = (name: string): string => `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: ${name} }\nspec: { selector: { namespace: ${name} } }\n`;
const id = (sa: string): string => `spiffe://${TD}/ns/demo/sa/${sa}`;
const meshId = (sa: string): string => `spiffe://${TD}/ns/mesh/sa/${sa}`;

/** One call planner → researcher through the sidecars: an allowed GET, or a DELETE no policy allows. */
interface Outcome {
  readonly allowedPath: boolean;
  readonly status: number;
  readonly error: string | undefined;
  readonly startedAt: number;
}

describe('replicas on a 3-member etcd cluster losing members', () => {
  let etcd: EtcdCluster;
  let dir: string;
  let root: string;
  const replicas: RunningControlPlane[] = [];
  const sidecars = new Map<string, { process: AirlockProcess; outboundPort: number; adminPort: number }>();
  const apps: Server[] = [];
  const received: EchoBody[] = [];
  const outcomes: Outcome[] = [];
  let trafficOn = false;
  let traffic: Promise<void> = Promise.resolve();

  /** Calls back to back from 2 workers until stopped; every outcome kept with its start time. */
  const startTraffic = (): void => {
    trafficOn = true;
    let i = 0;
    const port = (sidecars.get('planner') as { outboundPort: number }).outboundPort;
    traffic = Promise.all(
      Array.from({ length: 2 }, async () => {
        while (trafficOn) {
          const allowedPath = i++ % 4 !== 3;
          const startedAt = performance.now();
          const res = await viaProxy(port, allowedPath ? 'GET' : 'DELETE', `http://researcher.mesh/v1/item/${i}`, { timeoutMs: 20_000 });
          outcomes.push({ allowedPath, status: res.status, error: res.status >= 400 ? (res.json<{ error?: string }>().error ?? res.text) : undefined, startedAt });
          // Bounded: a few hundred calls a second at most, for the whole scenario.
          await sleep(5);
        }
      }),
    ).then(() => undefined);
  };
  const stopTraffic = async (): Promise<void> => {
    trafficOn = false;
    await traffic;
  };

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
    // Two real sidecars, each given both replicas: their checks spread over the two.
    const [a] = replicas as [RunningControlPlane];
    const both = replicas.map((r) => `127.0.0.1:${r.grpcPort}`).join(',');
    for (const name of ['researcher', 'planner']) {
      const app = await startEchoApp(name, 0, (body) => {
        if (name === 'researcher') received.push(body);
      });
      apps.push(app);
      const joinToken = String((await admin(a, '/v1/join-tokens', { identity: meshId(name) })).json.token);
      const process = spawnAirlock(`sidecar ${name}`, [
        'sidecar',
        '--trust-domain', TD,
        '--control-plane', both,
        '--ca-file', join(dir, 'ca.crt'),
        '--outbound-listen', '127.0.0.1:0',
        '--inbound-listen', '127.0.0.1:0',
        '--admin-listen', '127.0.0.1:0',
        '--app-port', String(boundPort(app)),
        // Generous: on a loaded CI machine only a replica that is gone should make a check miss it.
        '--authz-timeout', '2s',
      ], { logFile: join(dir, `sidecar-${name}.log`), env: { AIRLOCK_JOIN_TOKEN: joinToken } });
      const listening = await process.logLine('sidecar listening; obtaining an SVID');
      sidecars.set(name, { process, outboundPort: Number(listening.outbound), adminPort: Number(listening.admin) });
    }
    await Promise.all([...sidecars.values()].map((s) => waitReady(s.process, `http://127.0.0.1:${s.adminPort}/readyz`)));
  }, 90_000);
  afterAll(async () => {
    await stopTraffic();
    await Promise.all([...sidecars.values()].map((s) => s.process.stop()));
    await Promise.all(apps.map((app) => closeServer(app)));
    for (const m of etcd.members) m.process.kill('SIGCONT');
    for (const cp of replicas) await cp.close();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('loses no acknowledged write and lets nothing revoked through, refuses changes without quorum, and keeps it all across a restart', async () => {
    const [a, b] = replicas as [RunningControlPlane, RunningControlPlane];
    startTraffic();
    /** The calls started since `mark` (an index into outcomes when it was taken). */
    const since = (mark: number): Outcome[] => outcomes.slice(mark);
    const allowedCallsSince = async (mark: number, n: number): Promise<void> => until(`${n} allowed calls`, () => Promise.resolve(since(mark).filter((o) => o.status === 200).length >= n));
    await allowedCallsSince(0, 20);
    await acknowledged(a, '/v1/agents/revoke', { identity: id('before') });
    const v1 = Number((await acknowledged(a, '/v1/policy/apply', { yaml: `${POLICY}---\n${segment('one')}` })).version);
    await until('B follows', async () => (await revokedOn(b, id('before'))) && (await admin(b, '/v1/policy')).json.version === v1);

    // The leader dies: a new one is elected among the other two; what was acknowledged stays.
    const dead = await leader(etcd.members);
    const atLeaderKill = outcomes.length;
    dead.process.kill('SIGKILL');
    const alive = etcd.members.filter((m) => m !== dead);
    await acknowledged(a, '/v1/agents/revoke', { identity: id('during') });
    await until('B denies the identity revoked through A after the election', () => revokedOn(b, id('during')));
    expect(await revokedOn(b, id('before'))).toBe(true);
    expect((await admin(b, '/v1/policy')).json.version).toBe(v1);
    // Calls went on through the election: decisions are made from what each replica holds.
    await allowedCallsSince(atLeaderKill, 20);

    // A second member stops: no quorum. Changes are refused (no hang, no silent loss); decisions go on.
    const stopped = alive[0] as EtcdMember;
    stopped.process.kill('SIGSTOP');
    const atQuorumLoss = outcomes.length;
    const refused = await admin(a, '/v1/policy/apply', { yaml: `${POLICY}---\n${segment('two')}` });
    expect(refused.status).toBe(503);
    expect(refused.json).toMatchObject({ error: 'store_unavailable' });

    await allowedCallsSince(atQuorumLoss, 20);
    // Quorum back: the same change is accepted, and followed.
    stopped.process.kill('SIGCONT');
    const v2 = Number((await acknowledged(a, '/v1/policy/apply', { yaml: `${POLICY}---\n${segment('two')}` })).version);
    expect(v2).toBeGreaterThan(v1);
    await until('B follows the change made after quorum came back', async () => (await admin(b, '/v1/policy')).json.version === v2);

    // The calling agent revoked through A: once B follows, every call is denied, whichever replica decides it.
    const atRevoke = outcomes.length;
    await acknowledged(a, '/v1/agents/revoke', { identity: meshId('planner') });
    await until('B denies the planner', () => revokedOn(b, meshId('planner')));
    const atFollowed = outcomes.length;
    await until('40 calls after the revocation was followed', () => Promise.resolve(since(atFollowed).length >= 40));
    await stopTraffic();
    // A call under way when B followed may still have been decided before; from the next one on, none is let through.
    const afterRevocation = since(atFollowed + 2);
    expect(afterRevocation.filter((o) => o.status === 200)).toEqual([]);
    expect(new Set(afterRevocation.map((o) => `${o.status} ${o.error ?? ''}`))).toEqual(new Set(['403 denied']));
    // All through: 200 only for the allowed call, 403 only for the denied one, else 503 (fail closed);
    // and while the revocation lands, 502 for a call whose connection the researcher's sidecar closed
    // (a revoked peer's open connections are cut). The app never saw a DELETE.
    outcomes.forEach((o, i) => {
      const revoking = i >= atRevoke && i < atFollowed + 2;
      expect([o.allowedPath ? 200 : 403, 403, 503, ...(revoking ? [502] : [])]).toContain(o.status);
      if (o.status === 503) expect(o.error).toBe('authorization_unavailable');
      if (o.status === 502) expect(o.error).toBe('upstream_unavailable');
    });
    expect(received.filter((r) => r.method !== 'GET')).toEqual([]);
    const ok = outcomes.filter((o) => o.status === 200).length;
    expect(received.length).toBeGreaterThanOrEqual(ok);
    expect(received.length).toBeLessThanOrEqual(ok + outcomes.filter((o) => o.status === 502).length);

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
