// Issue 15 item 2, bounds: the behaviour baselines' memory caps are control-plane settings
// (baselineMaxFlows, baselineMaxIdentities). A control plane started with low caps keeps to them:
// past the flow cap a new flow is not learned, past the identity cap a new identity is not learned,
// each counted in airlock_baseline_dropped_total, and what was kept is what the API lists.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminGet } from '../cli/src/admin-client.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';

const AGENTS = ['planner', 'researcher', 'tools'] as const;
const POLICY = `${policyYaml('agents', AGENTS, [
  { name: 'planner-to-tools', from: 'planner', to: 'tools', methods: ['GET'], paths: ['/v1/*'] },
  { name: 'researcher-to-tools', from: 'researcher', to: 'tools', methods: ['GET'], paths: ['/v1/*'] },
])}---
apiVersion: airlock.dev/v1
kind: Baseline
metadata: { name: watch-all }
spec:
  from: { segments: [planner, researcher] }
  learn: 1h
  response: alert
`;

describe('baseline caps are settings, and a lower cap holds', () => {
  let mesh: Mesh;
  beforeAll(async () => {
    mesh = await startMesh({ agents: AGENTS, policy: POLICY, controlPlaneArgs: ['--baseline-max-flows', '2', '--baseline-max-identities', '1'] });
  }, 60_000);
  afterAll(async () => mesh.close());

  const dropped = async (what: string): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${mesh.httpPort}/metrics`)).text();
    const m = new RegExp(`^airlock_baseline_dropped_total\\{[^}]*what="${what}"[^}]*\\} (\\d+)$`, 'm').exec(text);
    return Number(m?.[1] ?? 0);
  };

  it('keeps at most baselineMaxFlows flows per identity and baselineMaxIdentities identities', async () => {
    for (const path of ['/v1/a', '/v1/b', '/v1/c', '/v1/d']) expect((await mesh.call('planner', 'GET', `http://tools.agents${path}`)).status).toBe(200);
    expect(await dropped('flow')).toBe(2);
    // A second identity: past the cap of one, not learned.
    expect((await mesh.call('researcher', 'GET', 'http://tools.agents/v1/a')).status).toBe(200);
    expect(await dropped('identity')).toBe(1);
    const listed = (await adminGet(mesh.creds, '/v1/baselines')) as { items: { identity: string; flows: unknown[] }[] };
    expect(listed.items.map((i) => [i.identity, i.flows.length])).toEqual([[mesh.agent('planner').identity, 2]]);
  });
});
