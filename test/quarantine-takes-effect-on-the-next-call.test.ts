// Issue 15, first slice: a responder quarantines an agent through the CLI and its very next call is
// denied (as source and as destination), its renewals are refused; releasing it (or its --ttl
// running out) lets policy decide again. A viewer cannot quarantine. Prints the time from the
// command's answer to the first denied call (measured, not asserted).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Mesh } from './support/mesh.ts';
import { policyYaml, startMesh } from './support/mesh.ts';
import { adminAndViewerCredentials, airlock } from './support/airlock-cli.ts';


const AGENTS = ['planner', 'researcher', 'payments'] as const;
const POLICY = policyYaml('agents', AGENTS, [
  { name: 'planner-to-researcher', from: 'planner', to: 'researcher', methods: ['GET'], paths: ['/v1/*'] },
  { name: 'researcher-to-payments', from: 'researcher', to: 'payments', methods: ['GET'], paths: ['/v1/*'] },
]);

describe('quarantine', () => {
  let mesh: Mesh;
  let admin: string;
  let viewer: string;
  beforeAll(async () => {
    mesh = await startMesh({ agents: AGENTS, policy: POLICY });
    ({ admin, viewer } = await adminAndViewerCredentials(mesh.dir, mesh.creds));
  }, 60_000);
  afterAll(async () => mesh.close());

  const denied = async (from: string, url: string): Promise<{ status: number; reason: string }> => {
    const res = await mesh.call(from, 'GET', url);
    return { status: res.status, reason: res.status === 403 ? res.json<{ reason: string }>().reason : '' };
  };

  it('denies every call naming the agent from its next call, both ways, and releases it', async () => {
    const researcher = mesh.agent('researcher').identity;
    expect((await mesh.call('planner', 'GET', 'http://researcher.agents/v1/a')).status).toBe(200);
    expect((await mesh.call('researcher', 'GET', 'http://payments.agents/v1/a')).status).toBe(200);

    const refused = await airlock(['quarantine', researcher, '--reason', 'exfiltration suspected'], viewer);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('needs role responder');

    const q = await airlock(['quarantine', researcher, '--reason', 'exfiltration suspected', '-o', 'json'], admin);
    expect(q.stderr).toBe('');
    const answered = performance.now();
    expect(JSON.parse(q.stdout)).toMatchObject({ identity: researcher, reason: 'exfiltration suspected' });
    // The very next call: as destination, then as source.
    const first = await denied('planner', 'http://researcher.agents/v1/a');
    console.log(`quarantine: first call after the command's answer denied ${(performance.now() - answered).toFixed(1)} ms later`);
    expect(first).toEqual({ status: 403, reason: 'quarantined' });
    expect(await denied('researcher', 'http://payments.agents/v1/a')).toEqual({ status: 403, reason: 'quarantined' });
    // Others are untouched.
    expect((await mesh.call('planner', 'GET', 'http://payments.agents/v1/a')).status).toBe(403);
    const listed = await airlock(['quarantine', 'list', '-o', 'json'], viewer);
    expect(JSON.parse(listed.stdout)).toEqual([expect.objectContaining({ identity: researcher, reason: 'exfiltration suspected' })]);

    const released = await airlock(['release', researcher, '-o', 'json'], admin);
    expect(JSON.parse(released.stdout)).toEqual({ identity: researcher, released: true, incident: expect.stringMatching(/^inc-/) as unknown });
    expect((await mesh.call('planner', 'GET', 'http://researcher.agents/v1/a')).status).toBe(200);
    expect((await mesh.call('researcher', 'GET', 'http://payments.agents/v1/a')).status).toBe(200);
  });

  it('ends by itself when its --ttl runs out', async () => {
    const researcher = mesh.agent('researcher').identity;
    const q = await airlock(['quarantine', researcher, '--reason', 'brief hold', '--ttl', '2s', '-o', 'json'], admin);
    const until = Date.parse((JSON.parse(q.stdout) as { until: string }).until);
    expect((await denied('planner', 'http://researcher.agents/v1/a')).reason).toBe('quarantined');
    while (Date.now() <= until) await new Promise((r) => setTimeout(r, 100));
    expect((await mesh.call('planner', 'GET', 'http://researcher.agents/v1/a')).status).toBe(200);
  });

  it('refuses bad input clearly', async () => {
    const researcher = mesh.agent('researcher').identity;
    expect((await airlock(['quarantine', researcher], admin)).stderr).toContain('--reason is required');
    expect((await airlock(['quarantine', researcher, '--reason', 'x', '--ttl', 'soon'], admin)).stderr).toContain('--ttl: expected a duration');
    expect((await airlock(['quarantine', 'spiffe://other.td/ns/a/sa/b', '--reason', 'x'], admin)).stderr).toContain('is not in this control plane');
  });
});
