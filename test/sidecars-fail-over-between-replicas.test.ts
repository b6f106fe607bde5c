// Issue 12 item 4: sidecars given every control-plane replica's address fail over when one dies.
// Three `airlock control-plane` processes on one real etcd, two real sidecars with all three
// addresses, a bounded stream of calls; the busiest replica is SIGKILLed mid-traffic. No call is let
// through without a decision (the agent sees 200 for allowed, 403 for denied, 503 at most for calls
// in flight at the kill), calls go on through the two others, and so do renewal and the trust-bundle
// stream (a revocation made afterwards reaches both sidecars).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boundPort, closeServer } from '@airlock/common/net';
import { adminPost } from '../cli/src/admin-client.ts';
import type { AdminCredentials } from '../cli/src/credentials.ts';
import { startEchoApp, type EchoBody } from '../cli/src/demo/echo-app.ts';
import { spawnAirlock, waitReady, type AirlockProcess } from '../cli/src/demo/processes.ts';
import { oneControlPlane } from '../sidecar/src/controlplane/control-plane-pool.ts';
import { JoinTokenSigner } from '../sidecar/src/identity/certificate-signer.ts';
import { newKeyAndCsr } from '../sidecar/src/identity/key-and-csr.ts';
import { startEtcd, type EtcdCluster } from './support/etcd.ts';
import { policyYaml } from './support/mesh.ts';
import { createOperatorPki } from './support/operator-ca.ts';
import { viaProxy } from './support/proxy-client.ts';

const TD = 'failover.test';
const NS = 'agents';
const AGENTS = ['planner', 'researcher'] as const;
const POLICY = policyYaml(NS, [...AGENTS, 'spare'], [{ name: 'planner-to-researcher', from: 'planner', to: 'researcher', methods: ['GET'], paths: ['/v1/*'] }]);
const CP_ID = `spiffe://${TD}/ns/airlock-system/sa/airlock-control-plane`;
const idOf = (name: string): string => `spiffe://${TD}/ns/${NS}/sa/${name}`;

interface Replica {
  readonly process: AirlockProcess;
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly adminPort: number;
  readonly dataDir: string;
}

interface Sidecar {
  readonly process: AirlockProcess;
  readonly outboundPort: number;
  readonly adminPort: number;
}

/** One call's outcome, and whether it was under way at the kill instant. */
interface Outcome {
  readonly allowedPath: boolean;
  readonly status: number;
  readonly code: string | undefined;
  readonly startedAt: number;
  readonly endedAt: number;
}

/** Sum of a metric's samples in a Prometheus text page (optionally only those with `label`). */
function sample(page: string, name: string, label = ''): number {
  return page
    .split('\n')
    .filter((l) => (l.startsWith(`${name} `) || l.startsWith(`${name}{`)) && l.includes(label))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

const metricsOf = async (port: number): Promise<string> => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();

describe('sidecars fail over between control-plane replicas', () => {
  let etcd: EtcdCluster;
  let dir: string;
  const replicas: Replica[] = [];
  const sidecars = new Map<string, Sidecar>();
  const apps: Server[] = [];
  const received: EchoBody[] = [];

  beforeAll(async () => {
    etcd = await startEtcd(1);
    dir = mkdtempSync(join(tmpdir(), 'airlock-failover-'));
    const pki = createOperatorPki();
    writeFileSync(join(dir, 'tls.crt'), pki.intermediate.certPem);
    writeFileSync(join(dir, 'tls.key'), pki.intermediate.keyPem, { mode: 0o600 });
    writeFileSync(join(dir, 'ca.crt'), pki.root.certPem);
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
    const store = `etcd://${etcd.endpoints.map((e) => e.replace('http://', '')).join(',')}`;
    for (let i = 0; i < 3; i++) {
      const dataDir = join(dir, `replica-${i}`);
      mkdirSync(dataDir);
      const process = spawnAirlock(`control-plane ${i}`, [
        'control-plane',
        '--trust-domain', TD,
        '--data-dir', dataDir,
        '--store', store,
        '--grpc-listen', '127.0.0.1:0',
        '--http-listen', '127.0.0.1:0',
        '--admin-listen', '127.0.0.1:0',
        '--ca-cert-file', join(dir, 'tls.crt'),
        '--ca-key-file', join(dir, 'tls.key'),
        '--ca-bundle-file', join(dir, 'ca.crt'),
        // Sidecars renew at about half of it: renewals go on all through the test.
        '--svid-ttl', '8s',
        // The first replica writes the policy; the others read it from etcd.
        ...(i === 0 ? ['--policy-file', join(dir, 'policy.yaml')] : []),
      ], { logFile: join(dir, `control-plane-${i}.log`) });
      const ready = await process.logLine('control plane ready', 30_000);
      replicas.push({ process, grpcPort: Number(ready.grpcPort), httpPort: Number(ready.httpPort), adminPort: Number(ready.adminPort), dataDir });
    }
    const first = replicas[0] as Replica;
    const token = readFileSync(join(first.dataDir, 'admin-token'), 'utf8').trim();
    const allAddresses = replicas.map((r) => `127.0.0.1:${r.grpcPort}`).join(',');
    for (const name of AGENTS) {
      const app = await startEchoApp(name, 0, (body) => {
        if (name === 'researcher') received.push(body);
      });
      apps.push(app);
      const joinToken = ((await adminPost(credsOf(first, token), '/v1/join-tokens', { identity: idOf(name) })) as { token: string }).token;
      const process = spawnAirlock(`sidecar ${name}`, [
        'sidecar',
        '--trust-domain', TD,
        '--control-plane', allAddresses,
        '--ca-file', join(dir, 'ca.crt'),
        '--outbound-listen', '127.0.0.1:0',
        '--inbound-listen', '127.0.0.1:0',
        '--admin-listen', '127.0.0.1:0',
        '--app-port', String(boundPort(app)),
        // Generous: under a loaded CI machine only a replica that is gone should make a check miss it.
        '--authz-timeout', '2s',
      ], { logFile: join(dir, `sidecar-${name}.log`), env: { AIRLOCK_JOIN_TOKEN: joinToken } });
      const listening = await process.logLine('sidecar listening; obtaining an SVID');
      sidecars.set(name, { process, outboundPort: Number(listening.outbound), adminPort: Number(listening.admin) });
    }
    await Promise.all([...sidecars.values()].map((s) => waitReady(s.process, `http://127.0.0.1:${s.adminPort}/readyz`)));
    adminToken = token;
  }, 120_000);

  let adminToken = '';
  function credsOf(r: Replica, token = adminToken): AdminCredentials {
    return { server: `https://127.0.0.1:${r.adminPort}`, token, caFile: join(dir, 'ca.crt') };
  }

  afterAll(async () => {
    await Promise.all([...sidecars.values()].map((s) => s.process.stop()));
    await Promise.all(replicas.map((r) => r.process.stop()));
    await Promise.all(apps.map((s) => closeServer(s)));
    await etcd.stop();
    if (process.env.AIRLOCK_KEEP_TEST_DIRS === undefined) rmSync(dir, { recursive: true, force: true });
  });

  const planner = (): Sidecar => sidecars.get('planner') as Sidecar;

  /** One call planner → researcher: an allowed GET, or a DELETE no policy allows. */
  async function call(i: number): Promise<Outcome> {
    const allowedPath = i % 3 !== 2;
    const startedAt = performance.now();
    const res = await viaProxy(planner().outboundPort, allowedPath ? 'GET' : 'DELETE', `http://researcher.${NS}/v1/item/${i}`, { timeoutMs: 20_000 });
    const code = res.status >= 400 ? (res.json<{ error?: string }>().error ?? res.text) : undefined;
    return { allowedPath, status: res.status, code, startedAt, endedAt: performance.now() };
  }

  /** `count` calls by `workers` concurrent loops; `onProgress` is told the count done after each. */
  async function traffic(count: number, workers: number, onProgress: (done: number) => void = () => undefined): Promise<Outcome[]> {
    const out: Outcome[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: workers }, async () => {
        while (next < count) {
          const i = next++;
          out.push(await call(i));
          onProgress(out.length);
        }
      }),
    );
    return out;
  }

  it('SIGKILL of a replica mid-traffic: no call without a decision, calls go on through the others, and so do renewal and revocations', { timeout: 180_000 }, async () => {
    const warm = await traffic(60, 4);
    expect(warm.map((o) => o.status).sort()).toEqual(warm.map((o) => (o.allowedPath ? 200 : 403)).sort());

    // The busiest replica: certainly one the sidecars' checks go to.
    const decided = await Promise.all(replicas.map(async (r) => sample(await metricsOf(r.httpPort), 'airlock_authz_decisions_total')));
    const victim = decided.indexOf(Math.max(...decided));
    const survivors = replicas.filter((_, i) => i !== victim);
    const renewalsBefore = await Promise.all([...sidecars.values()].map(async (s) => sample(await metricsOf(s.adminPort), 'airlock_sidecar_certificate_renewals_total')));
    const receivedBefore = received.length;

    let killedAt = 0;
    const killed = (async () => {
      while (killedAt === 0) await sleep(5);
    })();
    const during = traffic(240, 4, (done) => {
      if (done === 60 && killedAt === 0) {
        killedAt = performance.now();
        (replicas[victim] as Replica).process.child.kill('SIGKILL');
      }
    });
    await killed;
    const duringKill = await during;
    await (replicas[victim] as Replica).process.exited;
    const after = await traffic(120, 4);

    // Outcomes: 200 only for the allowed call, 403 only for the denied one, else 503 authorization_unavailable.
    const all = [...duringKill, ...after];
    const inFlightAtKill = duringKill.filter((o) => o.startedAt <= killedAt && o.endedAt >= killedAt).length;
    const unavailable = duringKill.filter((o) => o.status === 503);
    for (const o of all) {
      if (o.status === 503) expect(o.code).toBe('authorization_unavailable');
      else expect(o.status).toBe(o.allowedPath ? 200 : 403);
    }
    expect(unavailable.length).toBeLessThanOrEqual(inFlightAtKill);
    // Afterwards, through the two others, every call has its decision.
    expect(after.map((o) => o.status)).toEqual(after.map((o) => (o.allowedPath ? 200 : 403)));
    // The app received exactly the allowed calls that got 200, nothing else.
    const ok = all.filter((o) => o.status === 200).length;
    expect(received.length - receivedBefore).toBe(ok);
    expect(received.slice(receivedBefore).every((b) => b.method === 'GET' && b.path.startsWith('/v1/item/'))).toBe(true);

    const pages = await Promise.all([...sidecars.values()].map((s) => metricsOf(s.adminPort)));
    const failovers = pages.reduce((sum, p) => sum + sample(p, 'airlock_sidecar_control_plane_failovers_total', 'client="authorize"'), 0);
    expect(failovers).toBeGreaterThan(0);

    // Measured, printed, not asserted: what the agent saw around the kill.
    const slowest = Math.max(...duringKill.filter((o) => o.endedAt >= killedAt).map((o) => o.endedAt - o.startedAt));
    const lastFailureEnd = Math.max(killedAt, ...unavailable.map((o) => o.endedAt));
    console.log(
      `failover: killed replica ${victim} (${decided.join('/')} decisions before); ${duringKill.length + after.length} calls after warm-up, ` +
        `${inFlightAtKill} in flight at the kill, ${unavailable.length} answered 503, slowest call across the kill ${slowest.toFixed(1)} ms, ` +
        `last failure ${(lastFailureEnd - killedAt).toFixed(1)} ms after the kill; sidecar failovers (authorize): ${failovers}`,
    );

    // Renewal goes on through a remaining replica (SVIDs of 8 s renew every ~4 s).
    const renewedAt = performance.now();
    for (const [i, s] of [...sidecars.values()].entries()) {
      await expect.poll(async () => sample(await metricsOf(s.adminPort), 'airlock_sidecar_certificate_renewals_total'), { timeout: 30_000, interval: 200 }).toBeGreaterThan(renewalsBefore[i] ?? 0);
    }
    console.log(`renewal after the kill: both sidecars renewed within ${(performance.now() - renewedAt).toFixed(0)} ms of the check`);

    // The trust-bundle stream too: an identity revoked through a remaining replica reaches both sidecars.
    const survivor = survivors[0] as Replica;
    const spareToken = ((await adminPost(credsOf(survivor), '/v1/join-tokens', { identity: idOf('spare') })) as { token: string }).token;
    const signer = new JoinTokenSigner({ ...oneControlPlane(`127.0.0.1:${survivor.grpcPort}`), caPem: readFileSync(join(dir, 'ca.crt'), 'utf8'), controlPlaneId: CP_ID, joinToken: spareToken });
    try {
      await signer.sign({ csrPem: (await newKeyAndCsr()).csrPem, inboundAddress: '127.0.0.1:9' });
    } finally {
      signer.close();
    }
    await adminPost(credsOf(survivors[1] as Replica), '/v1/agents/revoke', { identity: idOf('spare') });
    for (const s of sidecars.values()) {
      await expect.poll(async () => sample(await metricsOf(s.adminPort), 'airlock_sidecar_revoked_serials'), { timeout: 30_000, interval: 200 }).toBeGreaterThan(0);
    }
  });
});
