import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';

const AGENTS = ['alpha', 'beta'] as const;
const POLICY = policyYaml('agents', AGENTS, [
  { name: 'alpha-to-beta', from: 'alpha', to: 'beta', methods: ['GET'], paths: ['/v1/*'] },
  { name: 'beta-to-alpha', from: 'beta', to: 'alpha', methods: ['GET'], paths: ['/v1/*'] },
]);
const TRAFFIC_MS = 60_000;
// Bounded in time and count: calls paced a little apart, at most MAX_CALLS per direction.
const PACE_MS = 10;
const MAX_CALLS = 6_000;

async function metricValue(url: string, name: string): Promise<number> {
  const text = await (await fetch(url)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('SVIDs of a few seconds renewed under continuous traffic both ways', () => {
  let mesh: Mesh;
  beforeAll(async () => {
    // A 4 s lifetime: each sidecar renews about every 2 s, some 30 times during the traffic.
    // The authorization deadline is raised so that a busy CI machine is not mistaken for a rotation fault.
    mesh = await startMesh({ agents: AGENTS, policy: POLICY, controlPlaneArgs: ['--svid-ttl', '4s'], authzTimeout: '2s' });
  });
  afterAll(async () => mesh.close());

  it('fails no call and renews many times', { timeout: TRAFFIC_MS + 60_000 }, async () => {
    const admin = (name: string): string => `http://127.0.0.1:${mesh.agent(name).adminPort}/metrics`;
    const firstExpiry = await metricValue(admin('alpha'), 'airlock_sidecar_certificate_expiry_timestamp_seconds');
    const failures: string[] = [];
    let calls = 0;
    const loop = async (from: string, to: string): Promise<void> => {
      const until = Date.now() + TRAFFIC_MS;
      for (let i = 0; i < MAX_CALLS && Date.now() < until; i++) {
        calls++;
        try {
          const res = await mesh.call(from, 'GET', `http://${to}.agents/v1/ping/${i}`);
          if (res.status !== 200) failures.push(`${from}→${to} #${i}: ${res.status} ${res.text.slice(0, 200)}`);
        } catch (err) {
          failures.push(`${from}→${to} #${i}: ${err instanceof Error ? err.message : String(err)}`);
        }
        await sleep(PACE_MS);
      }
    };
    await Promise.all([loop('alpha', 'beta'), loop('beta', 'alpha')]);

    expect(failures).toEqual([]);
    expect(calls).toBeGreaterThan(100);
    for (const name of AGENTS) {
      expect(await metricValue(admin(name), 'airlock_sidecar_certificate_renewals_total')).toBeGreaterThanOrEqual(10);
      expect((await fetch(`http://127.0.0.1:${mesh.agent(name).adminPort}/readyz`)).status).toBe(200);
    }
    expect(await metricValue(admin('alpha'), 'airlock_sidecar_certificate_expiry_timestamp_seconds')).toBeGreaterThan(firstExpiry + 30);
    const cp = `http://127.0.0.1:${mesh.httpPort}/metrics`;
    expect(await metricValue(cp, 'airlock_ca_renewals_total')).toBeGreaterThanOrEqual(20);
    const issued = await (await fetch(cp)).text();
    expect(issued).toMatch(/airlock_ca_certificates_issued_total\{[^}]*attestation="renewal"[^}]*\} \d+/);
    expect(issued).toMatch(/airlock_control_plane_certificate_expiry_timestamp_seconds\{[^}]*certificate="serving"/);
  });
});
