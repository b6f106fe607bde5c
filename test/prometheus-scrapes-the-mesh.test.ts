// Issue 14, item 4: a real Prometheus (Debian's) scrapes the control plane and the sidecars of a mesh
// this test starts, on loopback; after allowed and denied calls, the counts read back through the
// Prometheus HTTP API are exact, by verdict and direction (control plane) and by outcome (sidecars).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';
import { startPrometheus, type RunningPrometheus } from './support/prometheus.ts';

const AGENTS = ['planner', 'researcher'] as const;
const POLICY = policyYaml('agents', AGENTS, [{ name: 'planner-to-researcher', from: 'planner', to: 'researcher', methods: ['GET'], paths: ['/v1/*'] }]);
const ALLOWED = 7;
const DENIED = 3;

describe('a real Prometheus scraping the mesh', () => {
  let mesh: Mesh;
  let dir: string;
  let prometheus: RunningPrometheus;
  let api: string;

  /** The value of one instant query (0 when it has no series). */
  const query = async (promql: string): Promise<number> => {
    const res = (await (await fetch(`${api}/api/v1/query?query=${encodeURIComponent(promql)}`)).json()) as { status: string; data: { result: { value: [number, string] }[] } };
    expect(res.status).toBe('success');
    return res.data.result.reduce((a, r) => a + Number(r.value[1]), 0);
  };
  /** Waits (bounded) until Prometheus has scraped what `promql` should show. */
  const eventually = async (promql: string, expected: number): Promise<number> => {
    const end = Date.now() + 30_000;
    let last = await query(promql);
    while (last !== expected && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 250));
      last = await query(promql);
    }
    return last;
  };

  beforeAll(async () => {
    mesh = await startMesh({ agents: AGENTS, policy: POLICY });
    dir = mkdtempSync(join(tmpdir(), 'airlock-prometheus-'));
    const targets = (ports: readonly number[]): string[] => ports.map((p) => `127.0.0.1:${p}`);
    prometheus = await startPrometheus(dir, {
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      scrape_configs: [
        { job_name: 'control-plane', static_configs: [{ targets: targets([mesh.httpPort]) }] },
        { job_name: 'sidecars', static_configs: [{ targets: targets(AGENTS.map((a) => mesh.agent(a).adminPort)) }] },
      ],
    });
    api = prometheus.api;
    // Every target up before the traffic, so the counts start from a scraped zero.
    expect(await eventually('sum(up)', 3)).toBe(3);
  }, 90_000);
  afterAll(async () => {
    prometheus.stop();
    await mesh.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads back exact counts by verdict, direction and outcome after allowed and denied calls', async () => {
    for (let i = 0; i < ALLOWED; i++) expect((await mesh.call('planner', 'GET', `http://researcher.agents/v1/q${i}`)).status).toBe(200);
    for (let i = 0; i < DENIED; i++) expect((await mesh.call('planner', 'DELETE', `http://researcher.agents/v1/q${i}`)).status).toBe(403);

    // The control plane decided each call once, at planner's egress; researcher's ingress admitted each allowed one on its ticket.
    expect(await eventually('sum(airlock_authz_decisions_total{direction="outbound",verdict="allow"})', ALLOWED)).toBe(ALLOWED);
    expect(await eventually('sum(airlock_authz_decisions_total{direction="outbound",verdict="deny"})', DENIED)).toBe(DENIED);
    expect(await query('sum(airlock_authz_decisions_total{direction="inbound"})')).toBe(0);
    expect(await eventually('sum(airlock_sidecar_ticket_admissions_total)', ALLOWED)).toBe(ALLOWED);
    // The sidecars, by the instance Prometheus scraped them at.
    const planner = `127.0.0.1:${mesh.agent('planner').adminPort}`;
    const researcher = `127.0.0.1:${mesh.agent('researcher').adminPort}`;
    expect(await eventually(`sum(airlock_sidecar_requests_total{instance="${planner}",direction="outbound",outcome="allowed"})`, ALLOWED)).toBe(ALLOWED);
    expect(await eventually(`sum(airlock_sidecar_requests_total{instance="${planner}",direction="outbound",outcome="denied"})`, DENIED)).toBe(DENIED);
    expect(await eventually(`sum(airlock_sidecar_requests_total{instance="${researcher}",direction="inbound",outcome="allowed"})`, ALLOWED)).toBe(ALLOWED);
  }, 90_000);
});
