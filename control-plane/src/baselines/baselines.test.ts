import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { createRootLogger } from '@airlock/common/logging';
import { createRegistry } from '@airlock/common/telemetry';
import { AuthorizeRequest, Direction, Verdict } from '@airlock/proto/authorization/v1';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { NO_AUDIT, type AnomalyRecord, type AuditLog } from '../audit/event.ts';
import { Authorizer } from '../authz/authorize.ts';
import { createControlPlaneMetrics } from '../monitoring/metrics.ts';
import { PolicyEngine } from '../policy/engine.ts';
import { parsePolicyText } from '../policy/load.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import type { AgentRecord } from '../store/store.ts';
import { auditSchemaProblems } from '../testing/audit-events.ts';
import { baselinePolicyYaml } from '../testing/baseline-policy.ts';
import { Baselines } from './baselines.ts';

const TD = 'bl.test';
const id = (sa: string): string => `spiffe://${TD}/ns/demo/sa/${sa}`;
const A = id('a');
const B = id('b');


let dir: string;
let store: SqliteStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'baselines-'));
  store = SqliteStore.open(dir);
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(1_000_000);
});
afterEach(async () => {
  vi.useRealTimers();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function setup(spec: string, limits?: { maxFlows: number; maxIdentities: number }) {
  const engine = new PolicyEngine(parsePolicyText(baselinePolicyYaml(spec), 'p.yaml'), TD, 1);
  const agents = new Map<string, AgentRecord>([[B, { spiffeId: B, inboundAddress: '127.0.0.1:9', updatedAt: 1 }]]);
  const registry = createRegistry('test');
  const anomalies: AnomalyRecord[] = [];
  const contained: string[] = [];
  const audit: AuditLog = { ...NO_AUDIT, anomaly: (r) => void anomalies.push(r) };
  const baselines = await Baselines.load({ store, audit, registry, logger: createRootLogger({ process: 'test', level: 'silent' }), isQuarantined: () => false, contain: (identity) => Promise.resolve(void contained.push(identity)), flushMs: 3_600_000, ...(limits === undefined ? {} : { limits }) });
  const authorizer = new Authorizer({ trustDomain: TD, decisions: () => ({ engine, agents, revoked: new Set(), quarantined: new Map() }), metrics: createControlPlaneMetrics(registry), audit, baselines });
  const call = (path: string, over: Partial<AuthorizeRequest> = {}) =>
    authorizer.authorize(parseSpiffeId(A), AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: A, destinationHost: 'b.demo', destinationPort: 80, method: 'GET', path, ...over }));
  const count = async (response: string, kind: string) => ((await registry.getSingleMetric('airlock_anomalies_total')?.get())?.values ?? []).find((v) => v.labels.response === response && v.labels.kind === kind)?.value ?? 0;
  const dropped = async (what: string) => ((await registry.getSingleMetric('airlock_baseline_dropped_total')?.get())?.values ?? []).find((v) => v.labels.what === what)?.value ?? 0;
  return { baselines, authorizer, anomalies, contained, call, count, dropped };
}

describe('Baselines in Authorize', () => {
  it('deny: a new flow after learning is denied with its reason, audited once (schema) and counted; learned flows with other ids pass', async () => {
    const { call, anomalies, count, baselines } = await setup('{ from: { segments: [agents] }, learn: 10s, response: deny }');
    expect(call('/v1/users/1').verdict).toBe(Verdict.VERDICT_ALLOW);
    vi.setSystemTime(1_020_000);
    expect(call('/v1/users/2').verdict).toBe(Verdict.VERDICT_ALLOW);
    const denied = call('/v1/admin/export');
    expect(denied.verdict).toBe(Verdict.VERDICT_DENY);
    expect(denied.reason).toBe(`anomaly: new flow ${B} GET /v1/admin/export (not used while learning); Baseline "agents-normal" says deny`);
    expect(call('/v1/admin/export').verdict).toBe(Verdict.VERDICT_DENY);
    expect(anomalies).toEqual([{ identity: A, baseline: 'agents-normal', anomaly: 'new-flow', flow: `${B} GET /v1/admin/export`, why: `new flow ${B} GET /v1/admin/export (not used while learning)`, response: 'deny', mode: 'enforce', decisionId: denied.decisionId }]);
    const event = { schemaVersion: 1, id: randomUUID(), time: new Date().toISOString(), replica: 'r', chain: randomUUID(), seq: 1, prevHash: '0'.repeat(64), kind: 'anomaly', ...anomalies[0] };
    expect(auditSchemaProblems(event)).toEqual([]);
    expect(await count('deny', 'new-flow')).toBe(1);
    // Accepted: normal from now on.
    expect(await baselines.accept(A, `${B} GET /v1/admin/export`, 'alice')).toBe(true);
    expect(call('/v1/admin/export').verdict).toBe(Verdict.VERDICT_ALLOW);
  });

  it('alert and dry-run let the call through and record it; quarantine denies it and contains the agent once', async () => {
    const alert = await setup('{ from: { segments: [agents] }, learn: 10s, response: alert }');
    alert.call('/a');
    vi.setSystemTime(1_020_000);
    expect(alert.call('/b').verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(alert.anomalies.map((a) => a.response)).toEqual(['alert']);

    vi.setSystemTime(1_000_000);
    const dry = await setup('{ from: { segments: [agents] }, learn: 10s, response: quarantine, mode: dry-run }');
    await dry.baselines.reset(A);
    dry.call('/a');
    vi.setSystemTime(1_020_000);
    expect(dry.call('/b').verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(dry.anomalies.map((a) => [a.response, a.mode])).toEqual([['alert', 'dry-run']]);
    expect(dry.contained).toEqual([]);

    vi.setSystemTime(1_000_000);
    const q = await setup('{ from: { segments: [agents] }, learn: 10s, response: quarantine }');
    await q.baselines.reset(A);
    q.call('/a', { mcpMethod: 'tools/call', mcpTool: 'search' });
    vi.setSystemTime(1_020_000);
    const r = q.call('/a', { mcpMethod: 'tools/call', mcpTool: 'delete_all' });
    expect(r.verdict).toBe(Verdict.VERDICT_DENY);
    expect(r.reason).toMatch(/^anomaly: new flow .* tool=delete_all .*says quarantine$/);
    q.call('/a', { mcpMethod: 'tools/call', mcpTool: 'delete_all' });
    await new Promise((res) => setImmediate(res));
    expect(q.contained).toEqual([A]);
    expect(await q.count('quarantine', 'new-flow')).toBe(1);
  });

  it('learns only allowed OUTBOUND calls: an INBOUND check and a denied call teach nothing', async () => {
    const { authorizer, call, baselines } = await setup('{ from: { segments: [agents] }, learn: 10s, response: deny }');
    authorizer.authorize(parseSpiffeId(B), AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_INBOUND, sourceSpiffeId: A, destinationSpiffeId: B, destinationHost: 'b.demo', destinationPort: 80, method: 'GET', path: '/in' }));
    call('/x', { destinationHost: 'nowhere.example.com' });
    expect(baselines.get(A)).toBeUndefined();
    call('/learned');
    expect(baselines.get(A)?.flows.map((f) => f.flow)).toEqual([`${B} GET /learned`]);
  });

  it('survives a restart: what was learned is written as one batch and read back at start', async () => {
    const first = await setup('{ from: { segments: [agents] }, learn: 10s, response: deny }');
    first.call('/v1/a/1');
    await first.baselines.close();
    const second = await setup('{ from: { segments: [agents] }, learn: 10s, response: deny }');
    vi.setSystemTime(1_020_000);
    expect(second.call('/v1/a/2').verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(second.call('/v1/b').verdict).toBe(Verdict.VERDICT_DENY);
    await second.baselines.reset(A);
    expect(await store.listBaselines()).toEqual([]);
  });

  it('deny on a rate: a learned flow over factor x its peak in one window is denied (audited once), the next window is normal again', async () => {
    const { call, anomalies, count } = await setup('{ from: { segments: [agents] }, learn: 10s, response: deny, rateFactor: 2 }');
    // Learning: a peak of 2 calls in one 10s window.
    call('/v1/a');
    call('/v1/a');
    vi.setSystemTime(1_020_000);
    for (let i = 0; i < 4; i++) expect(call('/v1/a').verdict).toBe(Verdict.VERDICT_ALLOW);
    const over = call('/v1/a');
    expect(over.verdict).toBe(Verdict.VERDICT_DENY);
    expect(over.reason).toBe(`anomaly: rate 5 calls in 10s on ${B} GET /v1/a, over 2 × the learned peak of 2; Baseline "agents-normal" says deny`);
    expect(call('/v1/a').verdict).toBe(Verdict.VERDICT_DENY);
    expect(anomalies.map((a) => a.anomaly)).toEqual(['rate']);
    expect(await count('deny', 'rate')).toBe(1);
    vi.setSystemTime(1_030_000);
    expect(call('/v1/a').verdict).toBe(Verdict.VERDICT_ALLOW);
  });

  it('reads paths as policies do: another spelling of a learned path is that flow, another path is not', async () => {
    const { call } = await setup('{ from: { segments: [agents] }, learn: 10s, response: deny }');
    call('/v1/users/7/profile');
    vi.setSystemTime(1_020_000);
    // Percent-encoded unreserved characters, another id, a query: the same flow.
    expect(call('/v1/%75sers/8/pro%66ile?x=1').verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(call('/v1/users/3f2c1a9e-0b4d-4c3e-9f00-1234567890ab/profile').verdict).toBe(Verdict.VERDICT_ALLOW);
    // Neighbours that are other routes to an app: other case, a trailing segment, a matrix parameter, another method, another port.
    expect(call('/V1/users/8/profile').reason).toMatch(/^anomaly: new flow/);
    expect(call('/v1/users/8/profile/export').reason).toMatch(/^anomaly: new flow/);
    expect(call('/v1/users/8;admin/profile').reason).toMatch(/^anomaly: new flow/);
    expect(call('/v1/users/8/profile', { method: 'DELETE' }).reason).toMatch(/^anomaly: new flow/);
  });

  it('counts a flow left out at the per-identity bound (metric), which is still an anomaly after learning', async () => {
    const { call, dropped, baselines } = await setup('{ from: { segments: [agents] }, learn: 10s, response: deny }', { maxFlows: 1, maxIdentities: 1 });
    call('/one');
    call('/two');
    expect(await dropped('flow')).toBe(1);
    vi.setSystemTime(1_020_000);
    expect(call('/three').verdict).toBe(Verdict.VERDICT_DENY);
    expect(await dropped('flow')).toBe(2);
    expect(baselines.get(A)?.flows.map((f) => f.flow)).toEqual([`${B} GET /one`]);
  });

  it('rejects bad Baseline documents with the field and the reason', () => {
    const bad = (spec: string) => () => parsePolicyText(baselinePolicyYaml(spec), 'p.yaml');
    expect(bad('{ from: { segments: [agents] }, learn: 10s, response: block }')).toThrow(/spec.response/);
    expect(bad('{ from: { segments: [agents] }, learn: 31d, response: deny }')).toThrow(/spec.learn/);
    expect(bad('{ from: { segments: [agents] }, learn: 10s, response: deny, rateFactor: 1 }')).toThrow(/spec.rateFactor/);
    expect(bad('{ from: { segments: [nobody] }, learn: 10s, response: deny }')).toThrow(/Baseline "agents-normal" spec.from.segments names segment "nobody"/);
    expect(bad('{ from: { segments: [agents] }, response: deny }')).toThrow(/spec.learn/);
    expect(bad('{ from: { segments: [agents] }, learn: 10s, response: deny, to: {} }')).toThrow(/spec.to/);
  });
});
