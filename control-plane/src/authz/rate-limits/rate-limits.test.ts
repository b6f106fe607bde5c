import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { createRegistry } from '@airlock/common/telemetry';
import { AuthorizeRequest, Direction, Verdict } from '@airlock/proto/authorization/v1';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { AuditLog, DecisionRecord } from '../../audit/event.ts';
import { NO_AUDIT } from '../../audit/event.ts';
import { createControlPlaneMetrics } from '../../monitoring/metrics.ts';
import { PolicyEngine } from '../../policy/engine.ts';
import { parsePolicyText } from '../../policy/load.ts';
import { PolicyStore } from '../../policy/policy-store.ts';
import { SqliteStore } from '../../store/sqlite-store.ts';
import type { AgentRecord } from '../../store/store.ts';
import { auditSchemaProblems } from '../../testing/audit-events.ts';
import { Authorizer } from '../authorize.ts';
import { DecisionState } from '../decision-state.ts';

const TD = 'rl.test';
const id = (sa: string): string => `spiffe://${TD}/ns/demo/sa/${sa}`;
const A = id('a');
const C = id('c');
const B = id('b');

const SEGMENTS = `apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: callers }
spec: { selector: { namespace: demo, serviceAccounts: [a, c] } }
---
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: tools }
spec: { selector: { namespace: demo, serviceAccounts: [b] } }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: to-tools }
spec: { from: { segments: [callers] }, to: { segments: [tools] }, action: allow }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: to-api }
spec: { from: { segments: [callers] }, to: { hosts: [api.example.com, other.example.com] }, action: allow }
`;

const limit = (name: string, spec: string): string => `---\napiVersion: airlock.dev/v1\nkind: RateLimit\nmetadata: { name: ${name} }\nspec: ${spec}\n`;

/** An Authorizer on `yaml`, recording its audit decisions. */
function authorizerOf(yaml: string): { authorizer: Authorizer; decisions: DecisionRecord[]; registry: ReturnType<typeof createRegistry> } {
  const agents = new Map<string, AgentRecord>([[B, { spiffeId: B, inboundAddress: '127.0.0.1:9', updatedAt: 1 }]]);
  const engine = new PolicyEngine(parsePolicyText(yaml, 'p.yaml'), TD, 1);
  const registry = createRegistry('test');
  const decisions: DecisionRecord[] = [];
  const audit: AuditLog = { ...NO_AUDIT, decision: (r) => void decisions.push(r) };
  const authorizer = new Authorizer({ trustDomain: TD, decisions: () => ({ engine, agents, revoked: new Set(), quarantined: new Map() }), metrics: createControlPlaneMetrics(registry), audit });
  return { authorizer, decisions, registry };
}

const out = (from: string, host: string, over: Partial<AuthorizeRequest> = {}): AuthorizeRequest =>
  AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: from, destinationHost: host, destinationPort: 80, method: 'GET', path: '/x', ...over });
const ask = (a: Authorizer, from: string, host: string, over: Partial<AuthorizeRequest> = {}) => a.authorize(parseSpiffeId(from), out(from, host, over));
const inbound = (a: Authorizer, from: string) =>
  a.authorize(parseSpiffeId(B), AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_INBOUND, sourceSpiffeId: from, destinationSpiffeId: B, destinationHost: 'b.demo', destinationPort: 80, method: 'GET', path: '/x' }));

async function limitedCount(registry: ReturnType<typeof createRegistry>, name: string, mode: string): Promise<number | undefined> {
  const values = (await registry.getSingleMetric('airlock_authz_rate_limited_total')?.get())?.values ?? [];
  return values.find((v) => v.labels.rate_limit === name && v.labels.mode === mode)?.value;
}

/** The event as the audit trail writes it (envelope added), for the JSON Schema. */
const asEvent = (r: DecisionRecord): Record<string, unknown> => ({ schemaVersion: 1, id: randomUUID(), time: new Date().toISOString(), replica: 'r', chain: randomUUID(), seq: 1, prevHash: '0'.repeat(64), kind: 'decision', ...r });

describe('RateLimit enforcement in Authorize', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_000_000);
  });
  afterEach(() => vi.useRealTimers());

  it('per source: the (N+1)th call is denied with when to retry; other sources, INBOUND checks and tools/list filters are not charged; a refill lets it through', async () => {
    const { authorizer, decisions, registry } = authorizerOf(SEGMENTS + limit('per-caller', '{ from: { segments: [callers] }, per: source, requests: 2, interval: 1s }'));
    for (let i = 0; i < 2; i++) expect(ask(authorizer, A, 'b.demo').verdict).toBe(Verdict.VERDICT_ALLOW);
    // The destination's INBOUND check of the same call, and a tools/list filter, are not new calls.
    expect(inbound(authorizer, A).verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(ask(authorizer, A, 'b.demo', { method: 'POST', mcpListedTools: ['t'] }).verdict).toBe(Verdict.VERDICT_ALLOW);
    const limited = ask(authorizer, A, 'b.demo');
    expect(limited).toMatchObject({ verdict: Verdict.VERDICT_DENY, rateLimited: true, retryAfterMs: 500, upstream: undefined, ticket: '', policy: '' });
    expect(limited.reason).toMatch(/^rate limited: RateLimit "per-caller" allows 2 requests per 1000 ms per source; retry after 500 ms$/);
    // To an external host too (per source: any destination), and another source is unaffected.
    expect(ask(authorizer, A, 'api.example.com').rateLimited).toBe(true);
    expect(ask(authorizer, C, 'b.demo').verdict).toBe(Verdict.VERDICT_ALLOW);

    const event = decisions.at(-3);
    expect(event).toMatchObject({ verdict: 'deny', mode: 'enforce', rateLimit: { name: 'per-caller', per: 'source', mode: 'enforce', retryAfterMs: 500 } });
    for (const d of decisions) expect(auditSchemaProblems(asEvent(d))).toEqual([]);
    expect(await limitedCount(registry, 'per-caller', 'enforce')).toBe(2);

    vi.setSystemTime(1_000_500);
    expect(ask(authorizer, A, 'b.demo').verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(ask(authorizer, A, 'b.demo').rateLimited).toBe(true);
  });

  it('a denied call takes no token', () => {
    const { authorizer } = authorizerOf(SEGMENTS + limit('one', '{ from: { segments: [callers] }, per: source, requests: 1, interval: 1h }'));
    expect(ask(authorizer, A, 'nowhere.example.com').rateLimited).toBe(false);
    expect(ask(authorizer, A, 'b.demo').verdict).toBe(Verdict.VERDICT_ALLOW);
  });

  it('per source-destination keeps destinations apart; to.hosts selects only those hosts', () => {
    const { authorizer } = authorizerOf(SEGMENTS + limit('api', '{ from: { segments: [callers] }, to: { hosts: [api.example.com], ports: [80] }, per: source-destination, requests: 1, interval: 1h }'));
    expect(ask(authorizer, A, 'api.example.com').verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(ask(authorizer, A, 'API.example.com.').rateLimited).toBe(true);
    expect(ask(authorizer, A, 'api.example.com', { destinationPort: 443 }).rateLimited).toBe(false);
    for (let i = 0; i < 3; i++) expect(ask(authorizer, A, 'other.example.com').verdict).toBe(Verdict.VERDICT_ALLOW);
    for (let i = 0; i < 3; i++) expect(ask(authorizer, A, 'b.demo').verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(ask(authorizer, C, 'api.example.com').verdict).toBe(Verdict.VERDICT_ALLOW);
  });

  it('per policy: every caller the policy admits shares one bucket; to.segments selects agents only', () => {
    const { authorizer } = authorizerOf(SEGMENTS + limit('tools', '{ from: { segments: [callers] }, to: { segments: [tools] }, per: policy, requests: 2, interval: 1h }'));
    expect(ask(authorizer, A, 'b.demo').verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(ask(authorizer, C, 'b.demo').verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(ask(authorizer, A, 'b.demo').rateLimited).toBe(true);
    expect(ask(authorizer, C, 'b.demo').rateLimited).toBe(true);
    expect(ask(authorizer, C, 'api.example.com').verdict).toBe(Verdict.VERDICT_ALLOW);
  });

  it('dry-run lets the call through as "would deny", audited with mode dry-run, counted', async () => {
    const { authorizer, decisions, registry } = authorizerOf(SEGMENTS + limit('try', '{ from: { segments: [callers] }, per: source, requests: 1, interval: 1h, mode: dry-run }'));
    expect(ask(authorizer, A, 'b.demo').dryRunDeny).toBe(false);
    const res = ask(authorizer, A, 'b.demo');
    expect(res).toMatchObject({ verdict: Verdict.VERDICT_ALLOW, dryRunDeny: true, rateLimited: false, retryAfterMs: 0 });
    expect(res.reason).toMatch(/^would deny: rate limited: RateLimit "try"/);
    expect(decisions.at(-1)).toMatchObject({ verdict: 'allow', mode: 'dry-run', rateLimit: { name: 'try', mode: 'dry-run' } });
    expect(auditSchemaProblems(asEvent(decisions.at(-1) as DecisionRecord))).toEqual([]);
    expect(await limitedCount(registry, 'try', 'dry-run')).toBe(1);
  });
});

describe('RateLimit documents', () => {
  const parse = (spec: string): unknown => parsePolicyText(SEGMENTS + limit('x', spec), 'p.yaml');

  it('reads a RateLimit with its defaults (burst = requests, enforce)', () => {
    const docs = parsePolicyText(SEGMENTS + limit('x', '{ from: { segments: [callers] }, per: source, requests: 5, interval: 250ms }'), 'p.yaml');
    expect(docs.rateLimits).toEqual([expect.objectContaining({ name: 'x', fromSegments: ['callers'], toSegments: undefined, toHosts: undefined, toPorts: [], per: 'source', requests: 5, intervalMs: 250, burst: 5, mode: 'enforce' })]);
  });

  it.each([
    ['no per', '{ from: { segments: [callers] }, requests: 5, interval: 1s }', /"spec.per" is required/],
    ['an unknown per', '{ from: { segments: [callers] }, per: everyone, requests: 5, interval: 1s }', /"spec.per" must be one of/],
    ['zero requests', '{ from: { segments: [callers] }, per: source, requests: 0, interval: 1s }', /"spec.requests" must be a whole number/],
    ['a fraction', '{ from: { segments: [callers] }, per: source, requests: 1.5, interval: 1s }', /"spec.requests" must be a whole number/],
    ['a bad interval', '{ from: { segments: [callers] }, per: source, requests: 1, interval: 1 }', /"spec.interval" must be a non-empty string/],
    ['an interval over a day', '{ from: { segments: [callers] }, per: source, requests: 1, interval: 25h }', /at most 24h/],
    ['both segments and hosts', '{ from: { segments: [callers] }, to: { segments: [tools], hosts: [a.b] }, per: source, requests: 1, interval: 1s }', /exactly one of/],
    ['an unknown segment', '{ from: { segments: [ghosts] }, per: source, requests: 1, interval: 1s }', /RateLimit "x" spec.from.segments names segment "ghosts", which is not defined/],
    ['an unknown field', '{ from: { segments: [callers] }, per: source, requests: 1, interval: 1s, window: 2 }', /unknown field "spec.window"/],
  ])('refuses %s', (_why, spec, message) => {
    expect(() => parse(spec)).toThrow(message);
  });

  it('refuses a RateLimit defined twice', () => {
    const one = limit('x', '{ from: { segments: [callers] }, per: source, requests: 1, interval: 1s }');
    expect(() => parsePolicyText(SEGMENTS + one + one, 'p.yaml')).toThrow(/RateLimit "x" is defined twice/);
  });

  it('are stored with the policy set: applied, in force on the next decision, and a segment they use cannot be deleted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-rate-limit-store-'));
    const store = SqliteStore.open(dir);
    try {
      const decisions = new DecisionState(PolicyEngine.empty(TD));
      const policies = await PolicyStore.open({ store, decisions, trustDomain: TD, audit: NO_AUDIT });
      const r = await policies.apply(SEGMENTS + limit('x', '{ from: { segments: [callers] }, per: source, requests: 1, interval: 1s }'), 'p.yaml', 'alice');
      expect(r.changes.map((c) => `${c.kind}/${c.name}`)).toContain('RateLimit/x');
      expect(decisions.current().engine.rateLimits.map((l) => l.name)).toEqual(['x']);
      await expect(policies.delete('Segment', 'callers', 'alice')).rejects.toThrow(/RateLimit "x"/);
      await policies.delete('RateLimit', 'x', 'alice');
      expect(decisions.current().engine.rateLimits).toEqual([]);
      // A restart reads it back from the store.
      await policies.apply(limit('y', '{ from: { segments: [callers] }, per: policy, requests: 3, interval: 1m }'), 'p2.yaml', 'alice');
      const reopened = new DecisionState(PolicyEngine.empty(TD));
      await PolicyStore.open({ store, decisions: reopened, trustDomain: TD, audit: NO_AUDIT });
      expect(reopened.current().engine.rateLimits).toEqual([expect.objectContaining({ name: 'y', per: 'policy', requests: 3, intervalMs: 60_000 })]);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
