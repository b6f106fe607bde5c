import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { SqliteStore } from '../store/sqlite-store.ts';
import { AgentRegistry } from '../authz/registry.ts';
import { DecisionState } from '../authz/decision-state.ts';
import { explain, type ExplainInput } from '../authz/explain.ts';
import * as load from './load.ts';
import { PolicyEngine, toHost } from './engine.ts';
import { PolicyStore } from './policy-store.ts';
import { NO_AUDIT } from '../audit/event.ts';

// A pass-through spy: which texts the store parses.
vi.mock('./load.ts', async (original) => {
  const actual = await original<typeof import('./load.ts')>();
  return { ...actual, parsePolicyDocuments: vi.fn(actual.parsePolicyDocuments) };
});
const parsedTexts = (): string[] => vi.mocked(load.parsePolicyDocuments).mock.calls.map(([text]) => text);

const TD = 'td.test';
const seg = (name: string): string => `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: ${name} }\nspec:\n  selector: { namespace: agents, serviceAccounts: [${name}] }\n`;
const allow = (name: string, from: string, to: string, methods = 'GET'): string =>
  `apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: ${name} }\nspec:\n  from: { segments: [${from}] }\n  to: { hosts: [${to}] }\n  rules: [ { methods: [${methods}], paths: ["/v1/*"] } ]\n  action: allow\n`;
const call = (method = 'GET') => ({ source: parseSpiffeId(`spiffe://${TD}/ns/agents/sa/a`), destination: toHost('api.example.com'), port: 80, method, path: '/v1/x' });

describe('PolicyStore', () => {
  let dir: string;
  let store: SqliteStore;
  let policies: PolicyStore;
  let agents: AgentRegistry;
  let decisions: DecisionState;
  const open = async (): Promise<PolicyStore> => {
    decisions = new DecisionState(PolicyEngine.empty(TD));
    agents = await AgentRegistry.load(store, decisions);
    return PolicyStore.open({ store, decisions, trustDomain: TD, audit: NO_AUDIT });
  };
  /** Explain on the snapshot decisions read (where PolicyStore publishes its engine). */
  const explainNow = (input: ExplainInput) => explain(decisions.current(), TD, input);
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-policy-store-'));
    store = SqliteStore.open(dir);
    policies = await open();
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts at version 0, denying everything', () => {
    expect(policies.version()).toBe(0);
    expect(policies.engine().evaluate(call()).allow).toBe(false);
  });

  it('applies as version N+1 and the next decision follows, naming version, policy and rule', async () => {
    const r = await policies.apply(`${seg('a')}---\n${allow('a-out', 'a', 'api.example.com')}`, 'p.yaml', 'alice');
    expect(r).toMatchObject({ version: 1, changed: true });
    expect(r.changes.map((c) => `${c.change} ${c.kind}/${c.name}`)).toEqual(['added Segment/a', 'added Policy/a-out']);
    expect(policies.engine().evaluate(call())).toMatchObject({ allow: true, policy: 'a-out', rule: 'rules[0]', version: 1 });
    expect(policies.engine().evaluate(call('POST'))).toMatchObject({ allow: false, policy: '', version: 1 });
    // The same bundle again changes nothing and makes no version.
    expect(await policies.apply(`${seg('a')}---\n${allow('a-out', 'a', 'api.example.com')}`, 'p.yaml', 'alice')).toMatchObject({ version: 1, changed: false });
  });

  it('merges by kind and name: a later apply may reference stored segments and replace one policy', async () => {
    await policies.apply(`${seg('a')}---\n${allow('a-out', 'a', 'api.example.com')}`, 'p.yaml', 'alice');
    const r = await policies.apply(allow('a-out', 'a', 'api.example.com', 'GET, POST'), 'q.yaml', 'bob');
    expect(r.version).toBe(2);
    expect(r.changes).toHaveLength(1);
    expect(r.changes[0]?.lines.filter((l) => /^[-+]/.test(l))).toEqual([expect.stringMatching(/^- .*methods: \[ GET \]/), expect.stringMatching(/^\+ .*methods: \[ GET, POST \]/)]);
    expect(policies.engine().evaluate(call('POST')).allow).toBe(true);
    expect(policies.entries().map((e) => e.name)).toEqual(['a', 'a-out']);
  });

  it('refuses a bad bundle with file:line:col and changes nothing, not even its valid documents', async () => {
    await policies.apply(seg('a'), 'p.yaml', 'alice');
    await expect(policies.apply(`${seg('b')}---\n${allow('x', 'ghost', 'h.example.com')}`, 'bad.yaml', 'bob')).rejects.toThrow(
      /bad\.yaml:11:22: Policy "x" spec\.from\.segments names segment "ghost", which is not defined/,
    );
    await expect(policies.apply(`${seg('c')}  colour: blue\n`, 'bad.yaml', 'bob')).rejects.toThrow(/bad\.yaml:6:\d+: unknown field "spec\.colour"/);
    expect(policies.version()).toBe(1);
    expect(policies.entries().map((e) => e.name)).toEqual(['a']);
    expect(await store.listPolicyVersions(10)).toHaveLength(1);
  });

  it('refuses to delete or roll back past a segment quarantined now (that would release its members), and allows it once released', async () => {
    await policies.apply(seg('a'), 'p.yaml', 'alice');
    await policies.apply(seg('spare'), 'p.yaml', 'alice');
    const { Quarantines } = await import('../incident/quarantines.ts');
    const quarantines = await Quarantines.load(store, decisions);
    await quarantines.quarantine({ spiffeId: 'segment:spare', reason: 'worm', actor: 'rita', since: Date.now() });
    await expect(policies.delete('Segment', 'spare', 'bob')).rejects.toThrow('segment "spare" is quarantined (worm): release it first');
    await expect(policies.rollback(1, 'bob')).rejects.toThrow('segment "spare" is quarantined');
    expect(policies.version()).toBe(2);
    await policies.apply(seg('spare').replace('[spare]', '[other]'), 'p.yaml', 'bob');
    await quarantines.release('segment:spare');
    expect(await policies.delete('Segment', 'spare', 'bob')).toMatchObject({ changed: true });
  });

  it('deletes, refuses to delete a segment still in use, rolls back, and keeps it all across restart', async () => {
    await policies.apply(`${seg('a')}---\n${allow('a-out', 'a', 'api.example.com')}`, 'p.yaml', 'alice');
    await expect(policies.delete('Segment', 'a', 'bob')).rejects.toThrow(/Segment "a" is used by Policy "a-out"/);
    await expect(policies.delete('Policy', 'nope', 'bob')).rejects.toThrow(/does not exist/);
    expect(await policies.delete('Policy', 'a-out', 'bob')).toMatchObject({ version: 2, changed: true });
    expect(policies.engine().evaluate(call()).allow).toBe(false);
    expect(await policies.rollback(1, 'carol')).toMatchObject({ version: 3, changed: true });
    expect(policies.engine().evaluate(call())).toMatchObject({ allow: true, version: 3 });
    await expect(policies.rollback(9, 'carol')).rejects.toThrow(/version 9 does not exist/);
    expect((await policies.history(10)).map((h) => [h.version, h.actor, h.action])).toEqual([[3, 'carol', 'rollback'], [2, 'bob', 'delete'], [1, 'alice', 'apply']]);
    expect((await store.listAuditEvents(10)).map((e) => e.action)).toEqual(['policy.rollback', 'policy.delete', 'policy.apply']);
    policies = await open();
    expect(policies.version()).toBe(3);
    expect(policies.engine().evaluate(call()).allow).toBe(true);
  });

  it('parses only the documents a change brings, and reads every stored document back after a restart', async () => {
    await policies.apply(`${seg('a')}---\n${seg('b')}---\n${allow('a-out', 'a', 'api.example.com')}---\n${allow('b-out', 'b', 'b.example.com')}`, 'p.yaml', 'alice');
    vi.mocked(load.parsePolicyDocuments).mockClear();
    await policies.apply(allow('a-out', 'a', 'api.example.com', 'GET, POST'), 'q.yaml', 'bob');
    expect(parsedTexts()).toEqual([expect.stringMatching(/name: a-out[^]*GET, POST/)]);
    expect(policies.engine().evaluate(call('POST')).allow).toBe(true);
    vi.mocked(load.parsePolicyDocuments).mockClear();
    await policies.delete('Policy', 'b-out', 'bob');
    expect(parsedTexts()).toEqual([]);
    // Back to version 1: only a-out differs from the version in force.
    await policies.rollback(1, 'carol');
    expect(parsedTexts()).toEqual([expect.not.stringMatching(/GET, POST/)]);
    expect(parsedTexts()[0]?.match(/^kind: \w+/gm)).toEqual(['kind: Policy', 'kind: Policy']);
    expect(policies.engine().evaluate(call('POST')).allow).toBe(false);
    vi.mocked(load.parsePolicyDocuments).mockClear();
    policies = await open();
    expect(parsedTexts()[0]?.match(/^kind: \w+/gm)).toHaveLength(4);
    expect(policies.entries().map((e) => e.name)).toEqual(['a', 'b', 'a-out', 'b-out']);
  });

  it('diffs without changing anything and explains a call without traffic', async () => {
    await policies.apply(`${seg('a')}---\n${allow('a-out', 'a', 'api.example.com')}`, 'p.yaml', 'alice');
    expect(policies.diff(allow('b-out', 'a', 'b.example.com'), 'd.yaml').map((c) => c.change)).toEqual(['added']);
    expect(policies.version()).toBe(1);
    expect(explainNow({ from: `spiffe://${TD}/ns/agents/sa/a`, host: 'api.example.com', port: 80, method: 'GET', path: '/v1/q' })).toMatchObject({
      allow: true, policy: 'a-out', rule: 'rules[0]', version: 1, destination: '',
    });
    expect(explainNow({ from: `spiffe://${TD}/ns/agents/sa/a`, host: 'api.example.com', port: 80, method: 'GET', path: '/v1/../admin' })).toMatchObject({
      allow: false, reason: expect.stringMatching(/ambiguous path/) as unknown,
    });
  });

  it('explains a call to a registered agent as Authorize decides it: a host policy naming its mesh host does not admit it', async () => {
    await policies.apply(`${seg('a')}---\n${allow('a-out', 'a', '"*.agents"')}`, 'p.yaml', 'alice');
    await agents.upsert({ spiffeId: `spiffe://${TD}/ns/agents/sa/b`, inboundAddress: '127.0.0.1:9', updatedAt: 1 });
    const explainHost = (host: string) => explainNow({ from: `spiffe://${TD}/ns/agents/sa/a`, host, port: 80, method: 'GET', path: '/v1/q' });
    expect(explainHost('b.agents')).toMatchObject({ allow: false, policy: '', destination: `spiffe://${TD}/ns/agents/sa/b` });
    expect(explainHost('B.Agents.')).toMatchObject({ allow: false, policy: '', destination: `spiffe://${TD}/ns/agents/sa/b` });
    expect(explainHost('nobody.agents')).toMatchObject({ allow: true, policy: 'a-out', destination: '' });
  });
});
