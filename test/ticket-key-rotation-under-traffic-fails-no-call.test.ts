import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';

const AGENTS = ['alpha', 'beta'] as const;
const POLICY = policyYaml('agents', AGENTS, [{ name: 'alpha-to-beta', from: 'alpha', to: 'beta', methods: ['GET'], paths: ['/v1/*'] }]);
// Bounded in count and time: 4 callers, paced a little apart, until the key has rotated 3 times.
const WORKERS = 4;
const PACE_MS = 5;
const MAX_CALLS = 4000;
const MAX_MS = 60_000;

/** A sidecar's metric, summed over its label sets (0 when absent). */
async function metric(mesh: Mesh, agent: string, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${mesh.agent(agent).adminPort}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

describe('ticket keys rotated every 2 s under continuous traffic', () => {
  let mesh: Mesh;
  beforeAll(async () => {
    mesh = await startMesh({ agents: AGENTS, policy: POLICY, controlPlaneArgs: ['--ticket-key-rotation', '2s'], authzTimeout: '2s' });
  });
  afterAll(async () => mesh.close());

  it('fails no call, and calls are admitted on tickets under the new keys', { timeout: MAX_MS + 30_000 }, async () => {
    // beta is pushed its first key once it holds an SVID.
    for (let i = 0; i < 500 && (await metric(mesh, 'beta', 'airlock_sidecar_ticket_key_id')) < 1; i++) await sleep(20);
    const firstKey = await metric(mesh, 'beta', 'airlock_sidecar_ticket_key_id');
    expect(firstKey).toBeGreaterThanOrEqual(1);
    const failures: string[] = [];
    let calls = 0;
    let rotated = false;
    const until = Date.now() + MAX_MS;
    const worker = async (w: number): Promise<void> => {
      while (!rotated && calls < MAX_CALLS && Date.now() < until) {
        const n = calls++;
        try {
          const res = await mesh.call('alpha', 'GET', `http://beta.agents/v1/ping/${w}/${n}`);
          if (res.status !== 200) failures.push(`#${n}: ${res.status} ${res.text.slice(0, 200)}`);
        } catch (err) {
          failures.push(`#${n}: ${err instanceof Error ? err.message : String(err)}`);
        }
        await sleep(PACE_MS);
      }
    };
    const watcher = async (): Promise<void> => {
      while (!rotated && Date.now() < until && calls < MAX_CALLS) {
        rotated = (await metric(mesh, 'beta', 'airlock_sidecar_ticket_key_id')) >= firstKey + 3;
        await sleep(50);
      }
    };
    const admittedBefore = await metric(mesh, 'beta', 'airlock_sidecar_ticket_admissions_total');
    await Promise.all([watcher(), ...Array.from({ length: WORKERS }, (_, w) => worker(w))]);
    expect(rotated).toBe(true);
    expect(failures).toEqual([]);
    // Overlap: a ticket under the previous key is still admitted, and a new key issues only once pushed.
    expect(await metric(mesh, 'beta', 'airlock_sidecar_ticket_rejections_total')).toBe(0);
    expect(calls).toBeGreaterThan(50);

    // After the rotations, calls are still admitted on tickets (under a key beta was pushed).
    const admittedAfterRotations = await metric(mesh, 'beta', 'airlock_sidecar_ticket_admissions_total');
    expect(admittedAfterRotations).toBeGreaterThan(admittedBefore);
    for (let i = 0; i < 20; i++) expect((await mesh.call('alpha', 'GET', `http://beta.agents/v1/after/${i}`)).status).toBe(200);
    expect(await metric(mesh, 'beta', 'airlock_sidecar_ticket_admissions_total')).toBeGreaterThan(admittedAfterRotations);
  });
});
