import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminPost } from '../cli/src/admin-client.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';

// Freshness is not traded for speed: with decisions coalesced onto long-lived streams, and calls
// admitted by the destination's sidecar on their tickets (no second round trip), a policy change or
// a revocation must still apply to the very next call, while calls are in flight.
const AGENTS = ['alpha', 'beta', 'gamma'] as const;
const POLICY = policyYaml('agents', AGENTS, [
  { name: 'alpha-to-beta', from: 'alpha', to: 'beta', methods: ['GET'], paths: ['/v1/*'] },
  { name: 'alpha-to-gamma', from: 'alpha', to: 'gamma', methods: ['GET'], paths: ['/v1/*'] },
  { name: 'gamma-to-beta', from: 'gamma', to: 'beta', methods: ['GET'], paths: ['/v1/*'] },
]);
// The same policy name, now allowing only /v2/*: every /v1 call alpha → beta is denied from here on.
const NARROWED = policyYaml('agents', [], [{ name: 'alpha-to-beta', from: 'alpha', to: 'beta', methods: ['GET'], paths: ['/v2/*'] }]);

const WORKERS = 8;
const MAX_CALLS = 600; // per load run: bounded in count even if something hangs
const AFTER_CHANGE = 60; // calls that must start after the change returned

interface Call {
  readonly seq: number;
  readonly from: string;
  readonly to: string;
  readonly startedAt: number;
  endedAt: number;
  status: number;
  reason: string;
}

/** Bounded concurrent load: WORKERS loops calling `routes` round-robin until stopped or MAX_CALLS. */
function startLoad(mesh: Mesh, routes: readonly { from: string; to: string }[]): { calls: Call[]; completed(): number; stop(): Promise<void> } {
  const calls: Call[] = [];
  let stopped = false;
  let seq = 0;
  let completed = 0;
  const worker = async (): Promise<void> => {
    while (!stopped && seq < MAX_CALLS) {
      const n = seq++;
      const route = routes[n % routes.length] ?? { from: '', to: '' };
      const call: Call = { seq: n, ...route, startedAt: performance.now(), endedAt: 0, status: 0, reason: '' };
      calls.push(call);
      const res = await mesh.call(route.from, 'GET', `http://${route.to}.agents/v1/load/${n}`);
      call.endedAt = performance.now();
      call.status = res.status;
      call.reason = res.status === 200 ? '' : (res.json<{ reason?: string }>().reason ?? '');
      completed++;
    }
  };
  const workers = Array.from({ length: WORKERS }, () => worker());
  return {
    calls,
    completed: () => completed,
    stop: async () => {
      stopped = true;
      await Promise.all(workers);
    },
  };
}

/** Waits (bounded) until `pred` holds, polling on the event loop: load keeps running meanwhile. */
async function until(pred: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 3000 && !pred(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!pred()) throw new Error(`load never reached: ${what}`);
}

/** A sidecar's metric sample (summed over its label sets), 0 when absent. */
async function sidecarMetric(mesh: Mesh, agent: string, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${mesh.agent(agent).adminPort}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

/** Calls are admitted on tickets only once the destination's sidecar holds its key (pushed after its SVID). */
async function holdsTicketKey(mesh: Mesh, agent: string): Promise<void> {
  for (let i = 0; i < 500 && (await sidecarMetric(mesh, agent, 'airlock_sidecar_ticket_key_id')) < 1; i++) await new Promise((r) => setTimeout(r, 20));
}

/** Paths with a load sequence number that an agent's app received. */
const seen = (mesh: Mesh, agent: string): Set<number> => new Set(mesh.agent(agent).received.map((b) => Number(/\/v1\/load\/(\d+)$/.exec(b.path)?.[1] ?? -1)));

describe('freshness under load', () => {
  let mesh: Mesh;
  beforeAll(async () => {
    mesh = await startMesh({ agents: AGENTS, policy: POLICY });
  }, 60_000);
  afterAll(async () => mesh.close());

  it('a policy change applies to the very next call and to every call after it', { timeout: 90_000 }, async () => {
    await holdsTicketKey(mesh, 'beta');
    const ticketed = await sidecarMetric(mesh, 'beta', 'airlock_sidecar_ticket_admissions_total');
    const load = startLoad(mesh, [{ from: 'alpha', to: 'beta' }]);
    try {
      await until(() => load.completed() >= 40, '40 calls before the change');
      const sentAt = performance.now();
      const applied = (await adminPost(mesh.creds, '/v1/policy/apply', { yaml: NARROWED })) as { changed: boolean };
      const appliedAt = performance.now();
      expect(applied.changed).toBe(true);
      const next = await mesh.call('alpha', 'GET', 'http://beta.agents/v1/next');
      expect(next.status).toBe(403);
      expect(next.json<{ reason: string }>().reason).toMatch(/no policy allows GET \/v1\/next/);
      await until(() => load.calls.filter((c) => c.startedAt > appliedAt && c.endedAt > 0).length >= AFTER_CHANGE, `${AFTER_CHANGE} calls after the change`);
      await load.stop();

      const before = load.calls.filter((c) => c.endedAt < sentAt);
      const after = load.calls.filter((c) => c.startedAt > appliedAt);
      expect(before.length).toBeGreaterThanOrEqual(40);
      expect(before.every((c) => c.status === 200)).toBe(true);
      expect(after.length).toBeGreaterThanOrEqual(AFTER_CHANGE);
      expect(after.filter((c) => c.status !== 403 || !c.reason.startsWith('no policy allows'))).toEqual([]);
      // Denied means never forwarded: beta's app saw none of the calls that started after the change.
      const reached = seen(mesh, 'beta');
      expect(after.filter((c) => reached.has(c.seq)).map((c) => c.seq)).toEqual([]);
      expect(before.every((c) => reached.has(c.seq))).toBe(true);
      // Those calls were admitted by beta's sidecar on their tickets (no second decision): the
      // change applied to the next call all the same, because each ticket is one fresh decision.
      expect((await sidecarMetric(mesh, 'beta', 'airlock_sidecar_ticket_admissions_total')) - ticketed).toBeGreaterThanOrEqual(before.length);
    } finally {
      await load.stop();
    }
  });

  it('a revocation applies to the very next call to and from the agent, and to every call after it', { timeout: 90_000 }, async () => {
    const gammaBefore = seen(mesh, 'gamma');
    const betaBefore = seen(mesh, 'beta');
    mesh.agent('gamma').received.length = 0;
    mesh.agent('beta').received.length = 0;
    expect(gammaBefore.size + betaBefore.size).toBeGreaterThan(0); // the previous test's load reached the apps
    await holdsTicketKey(mesh, 'gamma');
    const ticketed = (await sidecarMetric(mesh, 'gamma', 'airlock_sidecar_ticket_admissions_total')) + (await sidecarMetric(mesh, 'beta', 'airlock_sidecar_ticket_admissions_total'));
    const load = startLoad(mesh, [{ from: 'alpha', to: 'gamma' }, { from: 'gamma', to: 'beta' }]);
    try {
      await until(() => load.completed() >= 40, '40 calls before the revocation');
      const sentAt = performance.now();
      const revoked = (await adminPost(mesh.creds, '/v1/agents/revoke', { identity: mesh.agent('gamma').identity })) as { alreadyRevoked: boolean };
      const revokedAt = performance.now();
      expect(revoked.alreadyRevoked).toBe(false);
      const to = await mesh.call('alpha', 'GET', 'http://gamma.agents/v1/next');
      expect(to.status).toBe(403);
      expect(to.json<{ reason: string }>().reason).toBe('identity revoked');
      const from = await mesh.call('gamma', 'GET', 'http://beta.agents/v1/next');
      expect(from.status).toBe(403);
      expect(from.json<{ reason: string }>().reason).toBe('identity revoked');
      await until(() => load.calls.filter((c) => c.startedAt > revokedAt && c.endedAt > 0).length >= AFTER_CHANGE, `${AFTER_CHANGE} calls after the revocation`);
      await load.stop();

      const before = load.calls.filter((c) => c.endedAt < sentAt);
      const after = load.calls.filter((c) => c.startedAt > revokedAt);
      expect(before.length).toBeGreaterThanOrEqual(40);
      expect(before.every((c) => c.status === 200)).toBe(true);
      expect(new Set(after.map((c) => c.from))).toEqual(new Set(['alpha', 'gamma']));
      expect(after.filter((c) => c.status !== 403 || c.reason !== 'identity revoked')).toEqual([]);
      const reached = new Set([...seen(mesh, 'gamma'), ...seen(mesh, 'beta')]);
      expect(after.filter((c) => reached.has(c.seq)).map((c) => c.seq)).toEqual([]);
      expect(before.every((c) => reached.has(c.seq))).toBe(true);
      const admitted = (await sidecarMetric(mesh, 'gamma', 'airlock_sidecar_ticket_admissions_total')) + (await sidecarMetric(mesh, 'beta', 'airlock_sidecar_ticket_admissions_total'));
      expect(admitted - ticketed).toBeGreaterThanOrEqual(before.length);
    } finally {
      await load.stop();
    }
  });
});
