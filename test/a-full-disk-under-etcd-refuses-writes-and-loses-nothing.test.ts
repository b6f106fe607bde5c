// Issue 16 item 4 (faults): the disk under etcd (Debian's etcd-server, one member) fills up while
// the control plane decides. etcd's data dir is a 160 MiB tmpfs in a mount namespace held by a
// process of the test (so it outlives an etcd that exits; nothing leaks to the host), filled to the
// last byte through /proc/<pid>/root. etcd cannot commit on a full disk and exits ("mvcc/backend:
// cannot commit tx … no space left on device"): decisions go on from memory, writes are refused with
// 503 store_unavailable, and once the operator frees space and etcd is started again, writes work,
// with no acknowledged write lost and no restart of the control plane. Then etcd's other "full", its
// quota, and the operator's way out of the NOSPACE alarm.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import { AlarmAction, AlarmType, Etcd3 } from 'etcd3';
import { AuthorizationServiceClient, AuthorizeRequest, Direction, Verdict } from '@airlock/proto/authorization/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../control-plane/src/ca/ca.ts';
import { makeCsr } from '../control-plane/src/ca/test-csr.ts';
import type { RunningControlPlane } from '../control-plane/src/main.ts';
import { until } from '../control-plane/src/testing/audit-collector.ts';
import { adminFetch, CLIENT_OPTIONS, controlPlaneChannel, TD } from '../control-plane/src/testing/test-control-plane.ts';
import { startEtcd, type EtcdCluster } from './support/etcd.ts';
import { fillToTheLastByte } from './support/full-disk.ts';
import { DEMO_TO_API_POLICY as POLICY, startReplica, writeSharedCa } from './support/replicas.ts';

const AGENT = `spiffe://${TD}/ns/demo/sa/researcher`;

/**
 * A process holding a private mount namespace with a tmpfs of `size` on `dir`; etcd is started inside
 * it with nsenter. It lives as long as its stdin is open, so it dies with the test process however
 * that ends, and it holds none of the test's output (an orphan holding the runner's stderr once kept
 * a CI run open until its time limit).
 */
async function tmpfsNamespace(dir: string, size: string): Promise<{ pid: number; close(): void }> {
  const holder: ChildProcess = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs -o size=${size} tmpfs "$0" && echo mounted && exec cat >/dev/null`, dir], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  holder.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  await new Promise<void>((resolve, reject) => {
    holder.stdout?.once('data', () => resolve());
    holder.once('exit', (code) => reject(new Error(`the tmpfs namespace did not start (${String(code)}): ${stderr}`)));
  });
  return { pid: holder.pid ?? 0, close: () => holder.kill('SIGKILL') };
}

/** A control plane on `etcd`, with an agent's decisions, admin writes and the join tokens listed. */
function controlPlaneOn(): {
  start(etcd: EtcdCluster): Promise<void>;
  close(): Promise<void>;
  readonly decide: (id: string) => Promise<string>;
  readonly createToken: (name: string) => Promise<{ status: number; json: Record<string, unknown> }>;
  readonly listed: () => Promise<string[]>;
} {
  let dir = '';
  let root = '';
  let cp: RunningControlPlane | undefined;
  const clients: { close(): void }[] = [];
  const running = (): RunningControlPlane => {
    if (cp === undefined) throw new Error('not started');
    return cp;
  };
  const admin = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
    const res = await adminFetch(running(), path, { method, headers: { authorization: `Bearer ${running().adminToken}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) }, root);
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  return {
    async start(etcd) {
      dir = mkdtempSync(join(tmpdir(), 'airlock-etcd-full-'));
      root = writeSharedCa(dir);
      writeFileSync(join(dir, 'policy.yaml'), POLICY);
      cp = await startReplica({ etcd, dir, trustDomain: TD, policyFile: join(dir, 'policy.yaml') });
    },
    async close() {
      for (const c of clients) c.close();
      await cp?.close();
      rmSync(dir, { recursive: true, force: true });
    },
    decide: (id) => {
      const ca = CertificateAuthority.fromOperator(TD, readFileSync(join(dir, 'tls.crt'), 'utf8'), readFileSync(join(dir, 'tls.key'), 'utf8'));
      const { csrPem, keyPem } = makeCsr();
      const client = new AuthorizationServiceClient(`127.0.0.1:${running().grpcPort}`, controlPlaneChannel(root, { certPem: ca.issueSvid(csrPem, id, 600_000).chainPem, keyPem }), CLIENT_OPTIONS);
      clients.push(client);
      const req = AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: id, destinationHost: 'api.example.com', destinationPort: 443, method: 'CONNECT', path: '' });
      return new Promise((resolve) => client.authorize(req, new Metadata(), { deadline: Date.now() + 2000 }, (err, res) => resolve(err !== null ? `error: ${err.message}` : res.verdict === Verdict.VERDICT_ALLOW ? 'allow' : `deny: ${res.reason}`)));
    },
    createToken: (name) => admin('POST', '/v1/join-tokens', { identity: `spiffe://${TD}/ns/demo/sa/${name}` }),
    listed: async () => ((await admin('GET', '/v1/join-tokens')).json.items as { identity: string }[]).map((t) => t.identity),
  };
}

describe('a full disk under etcd', () => {
  let etcd: EtcdCluster;
  let ns: { pid: number; close(): void };
  let etcdDir: string;
  // Undone in reverse, whichever of them beforeAll got to.
  const cleanups: (() => unknown)[] = [];
  const cp = controlPlaneOn();
  const { decide, createToken, listed } = cp;

  beforeAll(async () => {
    etcdDir = mkdtempSync(join(tmpdir(), 'airlock-etcd-full-data-'));
    cleanups.push(() => rmSync(etcdDir, { recursive: true, force: true }));
    // etcd preallocates each 64 MB WAL segment, and the next one beside it (a restart fails unless it
    // can): the tmpfs holds two and a little more.
    ns = await tmpfsNamespace(etcdDir, '160m');
    cleanups.push(() => ns.close());
    etcd = await startEtcd(1, { dataDir: etcdDir, wrap: ['nsenter', '-t', String(ns.pid), '-m', '--'] });
    cleanups.push(() => etcd.stop());
    cleanups.push(() => cp.close());
    await cp.start(etcd);
  }, 60_000);
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  it('keeps deciding, refuses writes with 503 store_unavailable while etcd cannot write, and writes again once space is freed and etcd restarted, losing no acknowledged write', { timeout: 120_000 }, async () => {
    expect(await decide(AGENT)).toBe('allow');
    expect((await createToken('before')).status).toBe(201);

    // Fill etcd's disk to the last byte.
    const filler = fillToTheLastByte(`/proc/${String(ns.pid)}/root${etcdDir}`);

    // Writes go on while etcd's WAL and database have room left in what they hold; the first commit
    // that needs a new page fails, and etcd exits. Every write is acknowledged (201) or refused (503).
    const acknowledged: string[] = [];
    let refused: { status: number; json: Record<string, unknown> } | undefined;
    for (let i = 0; i < 200 && refused === undefined; i++) {
      const res = await createToken(`while-full-${i}`);
      if (res.status === 201) acknowledged.push(`spiffe://${TD}/ns/demo/sa/while-full-${i}`);
      else refused = res;
    }
    expect(refused?.status).toBe(503);
    expect(refused?.json).toMatchObject({ error: 'store_unavailable' });
    const exited = etcd.members[0]?.process;
    await until('etcd exits', () => exited?.exitCode !== null);

    // Decisions are made from memory; every write is refused, clearly, naming the store.
    for (let i = 0; i < 3; i++) expect(await decide(AGENT)).toBe('allow');
    const again = await createToken('late');
    expect(again.status).toBe(503);
    expect(again.json).toMatchObject({ error: 'store_unavailable' });
    // Whether the etcd client's circuit breaker is open by now or not: unavailable, never "etcd refused".
    expect(String(again.json.reason)).toMatch(/^etcd is unavailable: /);

    // The operator frees space and starts etcd again (Kubernetes restarts its pod): it replays its WAL.
    unlinkSync(filler);
    const member = etcd.members[0];
    if (member === undefined) throw new Error('no etcd member');
    await etcd.restart(member);
    await until('writes work again', async () => (await createToken('after')).status === 201);
    expect(await decide(AGENT)).toBe('allow');
    // Nothing acknowledged was lost; what was refused is whole or absent (an etcd transaction).
    const now = await listed();
    for (const id of [`spiffe://${TD}/ns/demo/sa/before`, ...acknowledged, `spiffe://${TD}/ns/demo/sa/after`]) expect(now).toContain(id);
  });
});

// etcd's other "full": its database reaches --quota-backend-bytes (2 GiB by default; 1 MiB here).
// etcd raises its NOSPACE alarm and refuses every write until an operator compacts its history,
// defragments and disarms the alarm (what `etcdctl compact`, `etcdctl defrag` and `etcdctl alarm
// disarm` do; the test makes the same calls through the etcd API).
describe('etcd over its space quota (NOSPACE alarm)', () => {
  let etcd: EtcdCluster;
  /** etcd clients of the test (a new one per step: a client's circuit breaker opens on the refusals). */
  const clients: Etcd3[] = [];
  const client = (): Etcd3 => {
    const c = new Etcd3({ hosts: etcd.endpoints[0] ?? '' });
    clients.push(c);
    return c;
  };
  const cp = controlPlaneOn();

  beforeAll(async () => {
    etcd = await startEtcd(1, { args: ['--quota-backend-bytes', String(1024 * 1024)] });
    await cp.start(etcd);
  }, 60_000);
  afterAll(async () => {
    for (const c of clients) c.close();
    await cp.close();
    await etcd.stop();
  });

  it('keeps deciding and refuses writes with 503 store_unavailable naming the exceeded space; compact, defrag and alarm disarm make writes work again', { timeout: 120_000 }, async () => {
    expect(await cp.decide(AGENT)).toBe('allow');
    expect((await cp.createToken('before')).status).toBe(201);

    // Another writer's history fills the quota: one key rewritten with 64 KiB values.
    const value = Buffer.alloc(64 * 1024, 0x62);
    let exceeded = '';
    const writer = client();
    for (let i = 0; i < 100 && exceeded === ''; i++) {
      try {
        await writer.put('/other/filler').value(value);
      } catch (err) {
        exceeded = String(err);
      }
    }
    expect(exceeded).toMatch(/database space exceeded/);
    const operator = client();
    const alarms = (await operator.maintenance.alarm({ action: AlarmAction.Get, memberID: '0', alarm: AlarmType.None })).alarms;
    expect(alarms.map((a) => a.alarm)).toEqual(['Nospace']);

    expect(await cp.decide(AGENT)).toBe('allow');
    const refused = await cp.createToken('while-over');
    expect(refused.status).toBe(503);
    expect(refused.json).toMatchObject({ error: 'store_unavailable' });
    expect(String(refused.json.reason)).toMatch(/database space exceeded/);

    // What the operator does: compact the history, defragment, disarm.
    const revision = (await operator.maintenance.status()).header.revision;
    await operator.kv.compact({ revision, physical: true });
    await operator.maintenance.defragment();
    // As `etcdctl alarm disarm`: each raised alarm, by its member.
    for (const a of alarms) await operator.maintenance.alarm({ action: AlarmAction.Deactivate, memberID: a.memberID, alarm: AlarmType.Nospace });
    await until('writes work again', async () => (await cp.createToken('after')).status === 201);
    expect(await cp.decide(AGENT)).toBe('allow');
    const now = await cp.listed();
    expect(now).toContain(`spiffe://${TD}/ns/demo/sa/before`);
    expect(now).toContain(`spiffe://${TD}/ns/demo/sa/after`);
    expect(now).not.toContain(`spiffe://${TD}/ns/demo/sa/while-over`);
  });
});
