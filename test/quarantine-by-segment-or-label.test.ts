// Issue 15, quarantine selectors and incident records: a responder contains a whole segment or every
// agent with a label; decisions judge the selector at each call, so a member's next call is denied
// and so is one of an agent that joins the segment afterwards; releasing by the same selector
// restores them; the incident record lists who, why, what matched and the decisions before and after.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminGet, adminPost } from '../cli/src/admin-client.ts';
import type { Mesh } from './support/mesh.ts';
import { startMesh } from './support/mesh.ts';
import { adminAndViewerCredentials, airlock } from './support/airlock-cli.ts';


const segment = (name: string, sa: string): string => `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: ${name} }\nspec:\n  selector: { namespace: agents, serviceAccounts: ["${sa}"] }\n`;
const allow = (name: string, from: string, to: string): string =>
  `apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: ${name} }\nspec:\n  from: { segments: [${from}] }\n  to: { segments: [${to}] }\n  rules: [ { methods: [GET], paths: ["/v1/*"] } ]\n  action: allow\n`;
const POLICY = [segment('planner', 'planner'), segment('workers', 'worker-*'), allow('planner-to-workers', 'planner', 'workers'), allow('workers-to-planner', 'workers', 'planner')].join('---\n');

interface IncidentDecision {
  source: string;
  destination: string;
  verdict: string;
  reason: string;
  path: string;
}

describe('quarantine by segment or label, with incident records', () => {
  let mesh: Mesh;
  let admin: string;
  let viewer: string;
  beforeAll(async () => {
    mesh = await startMesh({ agents: ['planner', 'worker-a', 'worker-b'], policy: POLICY, labels: { 'worker-a': { team: 'red' }, 'worker-b': { team: 'blue' } } });
    ({ admin, viewer } = await adminAndViewerCredentials(mesh.dir, mesh.creds));
  }, 60_000);
  afterAll(async () => mesh.close());

  const outcome = async (from: string, url: string): Promise<number | string> => {
    const res = await mesh.call(from, 'GET', url);
    return res.status === 403 ? res.json<{ reason: string }>().reason : res.status;
  };

  it('contains every member of a segment from its next call, and an agent that joins it afterwards; release restores them; the incident keeps the decisions', async () => {
    const workerA = mesh.agent('worker-a').identity;
    const workerB = mesh.agent('worker-b').identity;
    expect(await outcome('planner', 'http://worker-a.agents/v1/before')).toBe(200);
    expect(await outcome('worker-b', 'http://planner.agents/v1/before')).toBe(200);

    const q = await airlock(['quarantine', '--segment', 'workers', '--reason', 'worm spreading', '-o', 'json'], admin);
    expect(q.stderr).toBe('');
    const set = JSON.parse(q.stdout) as { segment: string; matched: string[]; incident: string };
    expect(set).toMatchObject({ segment: 'workers', reason: 'worm spreading', matched: [workerA, workerB] });
    // The very next calls, both directions, both members; the planner's other traffic is untouched.
    expect(await outcome('planner', 'http://worker-a.agents/v1/after')).toBe('quarantined');
    expect(await outcome('worker-b', 'http://planner.agents/v1/after')).toBe('quarantined');
    expect(await outcome('planner', 'http://planner.agents/v1/self')).not.toBe('quarantined');

    // An agent registering after the quarantine falls in the segment: contained on its first call.
    const workerC = (await mesh.addAgent('worker-c')).identity;
    expect(await outcome('worker-c', 'http://planner.agents/v1/first')).toBe('quarantined');
    expect(await outcome('planner', 'http://worker-c.agents/v1/first')).toBe('quarantined');

    const listed = JSON.parse((await airlock(['quarantine', 'list', '-o', 'json'], viewer)).stdout) as unknown[];
    expect(listed).toEqual([expect.objectContaining({ segment: 'workers', reason: 'worm spreading' })]);

    const released = await airlock(['release', '--segment', 'workers', '-o', 'json'], admin);
    expect(JSON.parse(released.stdout)).toEqual({ segment: 'workers', released: true, incident: set.incident });
    expect(await outcome('planner', 'http://worker-a.agents/v1/again')).toBe(200);
    expect(await outcome('worker-c', 'http://planner.agents/v1/again')).toBe(200);

    const shown = await airlock(['incident', 'show', set.incident, '-o', 'json'], admin);
    expect(shown.stderr).toBe('');
    const incident = JSON.parse(shown.stdout) as { state: string; reason: string; openedBy: string; releasedBy: string; matched: string[]; before: IncidentDecision[]; after: IncidentDecision[] };
    expect(incident).toMatchObject({ segment: 'workers', state: 'released', reason: 'worm spreading', openedBy: 'admin-token', releasedBy: 'admin-token' });
    expect(incident.matched).toEqual([workerA, workerB, workerC]);
    expect(incident.before).toEqual(expect.arrayContaining([expect.objectContaining({ destination: workerA, verdict: 'allow', path: '/v1/before' }), expect.objectContaining({ source: workerB, verdict: 'allow', path: '/v1/before' })]));
    expect(incident.after).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ destination: workerA, verdict: 'deny', reason: 'quarantined', path: '/v1/after' }),
        expect.objectContaining({ source: workerC, verdict: 'deny', reason: 'quarantined', path: '/v1/first' }),
      ]),
    );
    // Nothing after the release, nor anyone else's calls.
    expect(incident.after.some((d) => d.path === '/v1/again' || d.path === '/v1/self')).toBe(false);
    expect(incident.before.some((d) => d.path === '/v1/after')).toBe(false);

    const table = await airlock(['incident', 'show', set.incident], admin);
    expect(table.stdout).toContain(`incident ${set.incident} (released)`);
    expect(table.stdout).toContain('decisions before:');
    const list = JSON.parse((await airlock(['incident', 'list', '-o', 'json'], admin)).stdout) as { id: string; state: string }[];
    expect(list[0]).toMatchObject({ id: set.incident, state: 'released', segment: 'workers', matchedTotal: 3 });
    // Quarantine, release and every read of the record are admin actions in the audit history.
    const { items: audit } = (await adminGet(mesh.creds, '/v1/audit')) as { items: { action: string; target: string; detail: string }[] };
    const actions = audit.map((e) => `${e.action} ${e.target}`);
    expect(actions).toEqual(expect.arrayContaining(['agent.quarantine segment:workers', 'agent.release segment:workers', `incident.show ${set.incident}`, 'incident.list incidents']));
    expect(JSON.parse(audit.find((e) => e.action === 'agent.quarantine')?.detail ?? '{}')).toMatchObject({ reason: 'worm spreading', incident: set.incident, matched: 2 });
  });

  it('contains every agent with a label, and says when a released identity is still inside a quarantined selector', async () => {
    const workerA = mesh.agent('worker-a').identity;
    const q = await airlock(['quarantine', '--selector', 'team=red', '--reason', 'red team drill', '-o', 'json'], admin);
    const set = JSON.parse(q.stdout) as { incident: string };
    expect(set).toMatchObject({ selector: 'team=red', matched: [workerA] });
    expect(await outcome('worker-a', 'http://planner.agents/v1/x')).toBe('quarantined');
    expect(await outcome('worker-b', 'http://planner.agents/v1/x')).toBe(200);
    // While it holds, the record shows the denied calls so far (and not the agents it does not match).
    const open = JSON.parse((await airlock(['incident', 'show', set.incident, '-o', 'json'], admin)).stdout) as { state: string; after: IncidentDecision[] };
    expect(open.state).toBe('open');
    expect(open.after).toEqual([expect.objectContaining({ source: workerA, verdict: 'deny', reason: 'quarantined', path: '/v1/x' })]);

    await airlock(['quarantine', workerA, '--reason', 'also by name'], admin);
    const byName = JSON.parse((await airlock(['release', workerA, '-o', 'json'], admin)).stdout) as unknown;
    expect(byName).toMatchObject({ identity: workerA, released: true, stillQuarantinedBy: { selector: 'team=red' } });
    expect(await outcome('worker-a', 'http://planner.agents/v1/x')).toBe('quarantined');

    expect(JSON.parse((await airlock(['release', '--selector', 'team=red', '-o', 'json'], admin)).stdout)).toMatchObject({ selector: 'team=red', released: true });
    expect(await outcome('worker-a', 'http://planner.agents/v1/x')).toBe(200);
  });

  it('refuses bad selectors and incident requests clearly, and incidents to a viewer', async () => {
    const unknown = await airlock(['quarantine', '--segment', 'nope', '--reason', 'x'], admin);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('segment "nope" is not defined in the policy in force');
    const both = await airlock(['quarantine', mesh.agent('worker-a').identity, '--segment', 'workers', '--reason', 'x'], admin);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('exactly one of a SPIFFE ID, --segment NAME or --selector KEY=VALUE');
    expect((await airlock(['quarantine', '--selector', 'no-equals', '--reason', 'x'], admin)).stderr).toContain('--selector: a label is KEY=VALUE');
    expect((await airlock(['release', '--selector', 'team=nobody', '-o', 'json'], admin)).stdout).toContain('"released": false');
    const viewerList = await airlock(['incident', 'list'], viewer);
    expect(viewerList.code).toBe(1);
    expect(viewerList.stderr).toContain('needs role responder');
    expect((await airlock(['incident', 'show', 'inc-20991231T000000.000Z-abcdef'], admin)).stderr).toContain('no incident inc-20991231T000000.000Z-abcdef');
    expect((await airlock(['incident', 'show', '../../v1/quarantines'], admin)).stderr).toContain('is not an incident id');
    expect((await airlock(['incident'], admin)).code).toBe(2);

    // The admin API itself, as a script would call it, with what the CLI never sends.
    const post = (body: unknown) => adminPost(mesh.creds, '/v1/agents/quarantine', body);
    const workerA = mesh.agent('worker-a').identity;
    await expect(post({ identity: workerA, segment: 'workers', reason: 'x' })).rejects.toThrow('exactly one of "identity"');
    await expect(post({ reason: 'x' })).rejects.toThrow('exactly one of "identity"');
    await expect(post({ segment: ['workers'], reason: 'x' })).rejects.toThrow('"segment" must be a string');
    await expect(post({ segment: '../workers', reason: 'x' })).rejects.toThrow('is not a segment name');
    await expect(post({ segment: 'Workers', reason: 'x' })).rejects.toThrow('is not a segment name');
    await expect(post({ selector: 'team=red\nx=y', reason: 'x' })).rejects.toThrow('selector: label value');
    await expect(post({ selector: '=red', reason: 'x' })).rejects.toThrow('a label is KEY=VALUE');
    await expect(post({ selector: 'Bad Key=red', reason: 'x' })).rejects.toThrow('label key');
    // A selector's stored key is no SPIFFE ID: it cannot be named as an identity, either way.
    await expect(post({ identity: 'segment:workers', reason: 'x' })).rejects.toThrow();
    await expect(post({ identity: 'label:team=red', reason: 'x' })).rejects.toThrow();
    await expect(adminPost(mesh.creds, '/v1/agents/release', { identity: 'segment:workers' })).rejects.toThrow();
    await expect(post({ selector: 'team=red', reason: 'x', labels: { a: 'b' } })).rejects.toThrow('unknown field(s): labels');
    await expect(adminGet(mesh.creds, '/v1/incidents/..%2F..%2Fv1%2Fquarantines')).rejects.toThrow('is not an incident id');
    await expect(adminGet(mesh.creds, '/v1/incidents/inc-20991231T000000.000Z-abcdef%00')).rejects.toThrow('is not an incident id');
    expect(JSON.parse((await airlock(['quarantine', 'list', '-o', 'json'], viewer)).stdout)).toEqual([]);
    expect((await airlock(['incident', '--help'], admin)).stdout).toContain('Usage: airlock incident list');
  });

  it('airlock export --identity includes the segment and label quarantines that contained the agent (and their releases), not the others', async () => {
    const workerA = mesh.agent('worker-a').identity;
    const workerB = mesh.agent('worker-b').identity;
    const log = join(mesh.dir, 'control-plane.log');
    const admins = (identity: string): Promise<[unknown, unknown][]> =>
      airlock(['export', '--identity', identity, '--since', '1h', log], admin).then((r) =>
        r.stdout
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => JSON.parse(l) as { kind: string; action?: string; target?: string })
          .filter((e) => e.kind === 'admin' && (e.action === 'agent.quarantine' || e.action === 'agent.release'))
          .map((e) => [e.action, e.target]),
      );
    expect(readFileSync(log, 'utf8')).toContain('"action":"agent.quarantine"');
    expect(await admins(workerA)).toEqual([
      ['agent.quarantine', 'segment:workers'],
      ['agent.release', 'segment:workers'],
      ['agent.quarantine', 'label:team=red'],
      ['agent.quarantine', workerA],
      ['agent.release', workerA],
      ['agent.release', 'label:team=red'],
    ]);
    // worker-b was in the segment, never in team=red.
    expect(await admins(workerB)).toEqual([
      ['agent.quarantine', 'segment:workers'],
      ['agent.release', 'segment:workers'],
    ]);
  });
});
