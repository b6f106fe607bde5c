// Issue 15 item 2: behaviour baselines through a real mesh. An agent's flows are learned for a short
// window (2s) from its first call; after it, a tool it never called is an anomaly answered as its
// Baseline says: quarantine (that call denied, the agent quarantined with an incident record by
// actor "baseline", its next call denied as quarantined), or deny (that flow denied until an operator
// accepts it). The same flows at rates within the factor raise nothing; reset relearns; what was
// learned survives a control plane restart. Anomalies are audited (schema-valid) and counted.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditEventsOf, auditSchemaProblems } from '../control-plane/src/testing/audit-events.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';
import { adminAndViewerCredentials, airlock } from './support/airlock-cli.ts';

const LEARN_MS = 2_000;

const AGENTS = ['planner', 'researcher', 'tools'] as const;
const baseline = (name: string, from: string, response: string): string =>
  `apiVersion: airlock.dev/v1\nkind: Baseline\nmetadata: { name: ${name} }\nspec:\n  from: { segments: [${from}] }\n  learn: 2s\n  response: ${response}\n  rateFactor: 10\n`;
const POLICY = `${policyYaml('agents', AGENTS, [
  { name: 'planner-to-tools', from: 'planner', to: 'tools', methods: ['GET', 'POST'], paths: ['/v1/*', '/v1/items/*', '/mcp'] },
  { name: 'researcher-to-tools', from: 'researcher', to: 'tools', methods: ['GET', 'POST'], paths: ['/v1/*', '/v1/items/*', '/mcp'] },
])}---
${baseline('planner-watch', 'planner', 'quarantine')}---
${baseline('researcher-watch', 'researcher', 'deny')}`;

interface Listed {
  items: { identity: string; startedAt: string; flows: { flow: string; state: string }[] }[];
}

describe('behaviour baselines through the mesh', () => {
  let mesh: Mesh;
  let admin: string;
  let viewer: string;
  beforeAll(async () => {
    mesh = await startMesh({ agents: AGENTS, policy: POLICY });
    ({ admin, viewer } = await adminAndViewerCredentials(mesh.dir, mesh.creds));
  }, 60_000);
  afterAll(async () => mesh.close());

  const tool = (from: string, name: string, id = 1) =>
    mesh.call(from, 'POST', 'http://tools.agents/mcp', {
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: {} } }),
    });
  const listed = async (identity: string, creds = viewer): Promise<Listed['items']> => {
    const r = await airlock(['baselines', 'list', '--identity', identity, '-o', 'json'], creds);
    expect(r.stderr).toBe('');
    return (JSON.parse(r.stdout) as Listed).items;
  };
  /** Waits (not asserted) until the learning window that began at the identity's first call is over. */
  const learned = async (identity: string): Promise<void> => {
    const [b] = await listed(identity);
    if (b === undefined) throw new Error(`no baseline for ${identity}`);
    const left = Date.parse(b.startedAt) + LEARN_MS + 100 - Date.now();
    if (left > 0) await sleep(left);
  };
  const anomaliesNow = (identity: string): Record<string, unknown>[] =>
    auditEventsOf(readFileSync(join(mesh.dir, 'control-plane.log'), 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)).filter((e) => e.kind === 'anomaly' && e.identity === identity);
  /** The anomaly events of `identity` once at least `n` are in the log (written asynchronously): polled, bounded. */
  const anomalies = async (identity: string, n: number): Promise<Record<string, unknown>[]> => {
    for (let i = 0; i < 100; i++) {
      const found = anomaliesNow(identity);
      if (found.length >= n) return found;
      await sleep(50);
    }
    return anomaliesNow(identity);
  };
  const reasonOf = (res: { status: number; json<T>(): T }): string => {
    const body = res.json<{ reason?: string; error?: { data?: { reason?: string } } }>();
    return body.reason ?? body.error?.data?.reason ?? '';
  };

  it('quarantines an agent on the first call of a tool it never used while learning; its next call is denied as quarantined', async () => {
    const planner = mesh.agent('planner').identity;
    const toolsId = mesh.agent('tools').identity;
    expect((await tool('planner', 'search')).status).toBe(200);
    expect((await mesh.call('planner', 'GET', 'http://tools.agents/v1/items/1')).status).toBe(200);
    await learned(planner);
    // Learned flows, another id: normal.
    expect((await tool('planner', 'search', 2)).status).toBe(200);
    expect((await mesh.call('planner', 'GET', 'http://tools.agents/v1/items/2')).status).toBe(200);
    const received = mesh.agent('tools').received.length;

    const sudden = await tool('planner', 'delete_everything', 3);
    // An MCP call is refused with a JSON-RPC error for its id.
    expect(sudden.json()).toMatchObject({ jsonrpc: '2.0', id: 3, error: { data: { error: 'denied' } } });
    expect(reasonOf(sudden)).toBe(`anomaly: new flow ${toolsId} POST /mcp tool=delete_everything (not used while learning); Baseline "planner-watch" says quarantine`);
    expect(mesh.agent('tools').received.length).toBe(received);

    // The quarantine is written to the store, then in force: polled, bounded.
    let quarantined = false;
    for (let i = 0; i < 100 && !quarantined; i++) {
      const q = JSON.parse((await airlock(['quarantine', 'list', '-o', 'json'], viewer)).stdout) as { identity?: string; actor: string }[];
      quarantined = q.some((x) => x.identity === planner && x.actor === 'baseline');
      if (!quarantined) await sleep(50);
    }
    expect(quarantined).toBe(true);
    const next = await mesh.call('planner', 'GET', 'http://tools.agents/v1/items/3');
    expect({ status: next.status, reason: reasonOf(next) }).toEqual({ status: 403, reason: 'quarantined' });

    const incidents = JSON.parse((await airlock(['incident', 'list', '-o', 'json'], admin)).stdout) as { identity?: string; openedBy: string; reason: string }[];
    expect(incidents).toEqual([expect.objectContaining({ identity: planner, openedBy: 'baseline', reason: expect.stringContaining('tool=delete_everything') as unknown })]);
    const events = await anomalies(planner, 1);
    expect(events).toEqual([expect.objectContaining({ identity: planner, baseline: 'planner-watch', anomaly: 'new-flow', flow: `${toolsId} POST /mcp tool=delete_everything`, response: 'quarantine', mode: 'enforce' })]);
    for (const e of events) expect(auditSchemaProblems(e)).toEqual([]);
    const metrics = await (await fetch(`http://127.0.0.1:${mesh.httpPort}/metrics`)).text();
    expect(metrics).toContain('airlock_anomalies_total{response="quarantine",kind="new-flow",process="control-plane"} 1');
    await airlock(['release', planner], admin);
  });

  it('raises nothing for the same flows at rates within the factor; a new path is denied until accepted; reset relearns; it survives a restart', async () => {
    const researcher = mesh.agent('researcher').identity;
    const toolsId = mesh.agent('tools').identity;
    for (let i = 0; i < 5; i++) expect((await mesh.call('researcher', 'GET', `http://tools.agents/v1/items/${i}`)).status).toBe(200);
    expect((await tool('researcher', 'search')).status).toBe(200);
    await learned(researcher);
    // Drift within bounds: the same flows, other ids, a handful of calls (under 10 × the learned peak).
    for (let i = 100; i < 108; i++) expect((await mesh.call('researcher', 'GET', `http://tools.agents/v1/items/${i}`)).status).toBe(200);
    expect((await tool('researcher', 'search', 2)).status).toBe(200);

    const admin1 = await mesh.call('researcher', 'GET', 'http://tools.agents/v1/admin');
    expect({ status: admin1.status, reason: reasonOf(admin1) }).toEqual({ status: 403, reason: `anomaly: new flow ${toolsId} GET /v1/admin (not used while learning); Baseline "researcher-watch" says deny` });
    expect((await mesh.call('researcher', 'GET', 'http://tools.agents/v1/admin')).status).toBe(403);
    // The only anomaly of the researcher is that one (events are written in order: none came of the drift before it).
    expect((await anomalies(researcher, 1)).map((e) => e.flow)).toEqual([`${toolsId} GET /v1/admin`]);
    expect((await listed(researcher))[0]?.flows).toContainEqual(expect.objectContaining({ flow: `${toolsId} GET /v1/admin`, state: 'anomaly' }));

    // A viewer may list but not accept; a flow not in the baseline is a clear error.
    const refused = await airlock(['baselines', 'accept', researcher, '--flow', `${toolsId} GET /v1/admin`], viewer);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('needs role responder');
    expect((await airlock(['baselines', 'accept', researcher, '--flow', 'nothing like it'], admin)).stderr).toContain('has no flow');
    const accepted = await airlock(['baselines', 'accept', researcher, '--flow', `${toolsId} GET /v1/admin`], admin);
    expect(accepted.stderr).toBe('');
    expect((await mesh.call('researcher', 'GET', 'http://tools.agents/v1/admin')).status).toBe(200);

    // Reset: forgotten, and learning again from the next call (a path never seen is allowed while learning).
    expect((await airlock(['baselines', 'reset', researcher], admin)).stdout).toContain('learns again');
    expect(await listed(researcher)).toEqual([]);
    expect((await mesh.call('researcher', 'GET', 'http://tools.agents/v1/secret')).status).toBe(200);
    await learned(researcher);
    expect((await mesh.call('researcher', 'GET', 'http://tools.agents/v1/admin')).status).toBe(403);

    // A restart: what was learned (written on the way down) is read back; the same flow is still normal, the new one still an anomaly.
    await mesh.stopControlPlane();
    await mesh.startControlPlane();
    let ok = 0;
    for (let i = 0; i < 100 && ok !== 200; i++) {
      ok = (await mesh.call('researcher', 'GET', 'http://tools.agents/v1/secret')).status;
      if (ok !== 200) await sleep(100);
    }
    expect(ok).toBe(200);
    expect((await listed(researcher))[0]?.flows.map((f) => [f.flow, f.state])).toEqual([[`${toolsId} GET /v1/secret`, 'learned'], [`${toolsId} GET /v1/admin`, 'anomaly']]);
    expect((await mesh.call('researcher', 'GET', 'http://tools.agents/v1/admin')).status).toBe(403);
  });

  it('lists and deletes Baseline documents with the other documents; a segment a Baseline uses cannot be deleted; without its Baseline nothing is judged', async () => {
    const got = JSON.parse((await airlock(['get', 'baselines', '-o', 'json'], viewer)).stdout) as { items: { kind: string; name: string }[] };
    expect(got.items.map((d) => [d.kind, d.name])).toEqual([['Baseline', 'planner-watch'], ['Baseline', 'researcher-watch']]);
    // Another trust domain is refused by the control plane; a malformed ID by the CLI (exit 2).
    expect((await airlock(['baselines', 'reset', 'spiffe://other.td/ns/agents/sa/researcher'], admin)).stderr).toContain('is not in this control plane');
    expect((await airlock(['baselines', 'list', '--identity', 'spiffe://other.td/ns/agents/sa/researcher'], viewer)).stderr).toContain('is not in this control plane');
    expect((await airlock(['baselines', 'accept', 'researcher', '--flow', 'x'], admin)).code).toBe(2);
    const used = await airlock(['delete', 'segment', 'researcher'], admin);
    expect(used.stderr).toContain('Baseline "researcher-watch"');
    const deleted = await airlock(['delete', 'baseline', 'researcher-watch'], admin);
    expect(deleted.stderr).toBe('');
    // The flow flagged before is a policy matter again.
    expect((await mesh.call('researcher', 'GET', 'http://tools.agents/v1/admin')).status).toBe(200);
  });
});
