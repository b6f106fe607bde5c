import { parseSpiffeId } from '@airlock/common/spiffe';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DecisionState } from '../authz/decision-state.ts';
import { decide } from '../authz/decide.ts';
import { AgentRegistry } from '../authz/registry.ts';
import { PolicyEngine, toAgent } from '../policy/engine.ts';
import { parsePolicyText } from '../policy/load.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { Quarantines } from './quarantines.ts';
import { segmentTarget, targetKey } from './quarantine-target.ts';
import { Incidents } from './incidents.ts';
import { DECISIONS_PER_IDENTITY, MAX_IDENTITIES, RecentDecisions } from './recent-decisions.ts';
import type { DecisionRecord } from '../audit/event.ts';

const TD = 'unit.test';
const id = (sa: string): string => `spiffe://${TD}/ns/agents/sa/${sa}`;
const POLICY = `apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: workers }
spec:
  selector: { namespace: agents, serviceAccounts: ["worker-*"] }
---
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: all }
spec:
  selector: { namespace: agents, serviceAccounts: ["*"] }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: all-to-all }
spec:
  from: { segments: [all] }
  to: { segments: [all] }
  action: allow
`;

describe('Quarantines with selectors', () => {
  let store: SqliteStore;
  let decisions: DecisionState;
  let agents: AgentRegistry;
  let quarantines: Quarantines;
  beforeEach(async () => {
    store = new SqliteStore(':memory:');
    decisions = new DecisionState(new PolicyEngine(parsePolicyText(POLICY, 'policy.yaml'), TD));
    agents = await AgentRegistry.load(store, decisions);
    quarantines = await Quarantines.load(store, decisions);
  });
  afterEach(async () => store.close());

  const register = (sa: string, labels: Record<string, string> = {}): Promise<void> => agents.upsert({ spiffeId: id(sa), inboundAddress: '127.0.0.1:1', updatedAt: 1, labels });
  const call = (from: string, to: string) => decide(decisions.current(), { source: parseSpiffeId(id(from)), destination: toAgent(parseSpiffeId(id(to))), port: 443, method: 'GET', path: '/' }).decision;

  it('pushes an agent that registers after its segment was quarantined (and only one that matches), and denies its calls', async () => {
    await register('planner');
    await register('worker-a');
    await quarantines.quarantine({ spiffeId: targetKey(segmentTarget('workers')), reason: 'worm', actor: 'alice', since: Date.now() });
    expect(quarantines.identities()).toEqual([id('worker-a')]);
    let pushes = 0;
    quarantines.onChange(() => pushes++);
    await register('worker-b');
    await new Promise((r) => setImmediate(r));
    expect(pushes).toBe(1);
    expect(quarantines.identities()).toEqual([id('worker-a'), id('worker-b')]);
    await register('scribe');
    await new Promise((r) => setImmediate(r));
    expect(pushes).toBe(1);
    expect(call('worker-b', 'planner')).toMatchObject({ allow: false, reason: 'quarantined' });
    expect(call('planner', 'worker-b')).toMatchObject({ allow: false, reason: 'quarantined' });
    expect(call('planner', 'scribe')).toMatchObject({ allow: true });
    expect(quarantines.isQuarantined(id('worker-b'))).toBe(true);
    expect(quarantines.isQuarantined(id('scribe'))).toBe(false);
  });

  it('contains by label from the registry, ends at its until, and releases by its key', async () => {
    await register('planner');
    await register('scribe', { team: 'red' });
    const now = Date.now();
    await quarantines.quarantine({ spiffeId: 'label:team=red', reason: 'drill', actor: 'bob', since: now, until: now + 60_000 });
    expect(call('planner', 'scribe')).toMatchObject({ allow: false, reason: 'quarantined' });
    expect(quarantines.isQuarantined(id('scribe'), now + 60_000)).toBe(false);
    expect(decide(decisions.current(), { source: parseSpiffeId(id('planner')), destination: toAgent(parseSpiffeId(id('scribe'))), port: 443, method: 'GET', path: '/' }, now + 60_000).decision.allow).toBe(true);
    const pushed: (readonly string[])[] = [];
    quarantines.onChange(() => pushed.push(quarantines.identities()));
    expect(await quarantines.release('label:team=red')).toMatchObject({ reason: 'drill' });
    expect(call('planner', 'scribe')).toMatchObject({ allow: true });
    // The release is pushed, though no one is quarantined any more (sidecars must drop it).
    expect(pushed).toEqual([[]]);
  });
});

describe('Incidents', () => {
  it('opens one per quarantine, updates it when set again, opens a new one once it ran out, and closes it on release with the decisions while it held', async () => {
    const store = new SqliteStore(':memory:');
    const decisions = new DecisionState(new PolicyEngine(parsePolicyText(POLICY, 'policy.yaml'), TD));
    const quarantines = await Quarantines.load(store, decisions);
    let now = 1000;
    const recent = new RecentDecisions(() => now);
    const incidents = new Incidents({ store, quarantines, recent });
    const target = { kind: 'identity', uri: id('scribe') } as const;
    const seen = (n: number): void => recent.record({ decisionId: `d${n}`, direction: 'outbound', source: id('scribe'), destination: '', host: 'h', port: 443, method: 'GET', path: `/${n}`, verdict: 'allow', mode: 'enforce', policyVersion: 1, policy: 'p', rule: '*', reason: 'allowed', latencyMs: 0 });
    seen(1);
    now = 2000;
    const first = await incidents.opened({ spiffeId: id('scribe'), reason: 'a', actor: 'alice', since: 2000, until: 5000 }, target, 'responder');
    expect(first).toMatchObject({ openedBy: 'alice', openedByRole: 'responder', matched: [id('scribe')], before: [expect.objectContaining({ decisionId: 'd1' })] });
    now = 3000;
    seen(2);
    const again = await incidents.opened({ spiffeId: id('scribe'), reason: 'b', actor: 'bob', since: 3000 }, target, 'admin');
    expect(again).toMatchObject({ id: first.id, reason: 'b', openedBy: 'alice' });
    expect(again.until).toBeUndefined();
    expect((await incidents.show(first.id, now))?.after).toEqual([expect.objectContaining({ decisionId: 'd2' })]);
    const closed = await incidents.released(id('scribe'), target, 'carol', 4000);
    expect(closed).toMatchObject({ id: first.id, releasedBy: 'carol', releasedAt: 4000, after: [expect.objectContaining({ decisionId: 'd2' })] });
    const brief = await incidents.opened({ spiffeId: id('scribe'), reason: 'c', actor: 'alice', since: 5000, until: 6000 }, target, 'responder');
    expect(brief.id).not.toBe(first.id);
    const later = await incidents.opened({ spiffeId: id('scribe'), reason: 'd', actor: 'alice', since: 7000 }, target, 'responder');
    expect(later.id).not.toBe(brief.id);
    expect((await incidents.list(10)).map((r) => r.reason)).toEqual(['d', 'c', 'b']);
    await store.close();
  });
});

describe('RecentDecisions', () => {
  const record = (n: number, source: string, destination = ''): DecisionRecord => ({
    decisionId: `d${n}`, direction: 'outbound', source, destination, host: 'h', port: 443, method: 'GET', path: `/${n}`, verdict: 'allow', mode: 'enforce', policyVersion: 1, policy: 'p', rule: '*', reason: 'allowed', latencyMs: 0,
  });

  it('keeps the last DECISIONS_PER_IDENTITY per identity, as source or destination, each decision once, in a window', () => {
    let now = 0;
    const recent = new RecentDecisions(() => now);
    for (let n = 0; n < DECISIONS_PER_IDENTITY + 10; n++) {
      now = n;
      recent.record(record(n, id('a'), id('b')));
    }
    const kept = recent.between([id('a'), id('b')], 0, Number.MAX_SAFE_INTEGER, 1000);
    expect(kept.map((d) => d.decisionId)).toEqual(Array.from({ length: DECISIONS_PER_IDENTITY }, (_, i) => `d${i + 10}`));
    expect(recent.between([id('b')], 20, 25, 1000).map((d) => d.at)).toEqual([20, 21, 22, 23, 24]);
    expect(recent.between([id('a')], 0, Number.MAX_SAFE_INTEGER, 3).map((d) => d.decisionId)).toEqual([`d${DECISIONS_PER_IDENTITY + 7}`, `d${DECISIONS_PER_IDENTITY + 8}`, `d${DECISIONS_PER_IDENTITY + 9}`]);
  });

  it('holds rings for at most MAX_IDENTITIES identities (the oldest ring goes)', () => {
    const recent = new RecentDecisions(() => 1);
    for (let n = 0; n <= MAX_IDENTITIES; n++) recent.record(record(n, id(`s${n}`)));
    expect(recent.between([id('s0')], 0, 2, 10)).toEqual([]);
    expect(recent.between([id('s1'), id(`s${MAX_IDENTITIES}`)], 0, 2, 10)).toHaveLength(2);
  });
});
