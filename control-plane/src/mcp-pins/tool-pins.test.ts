import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ErrorCode } from '@airlock/common/errors';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { createRegistry } from '@airlock/common/telemetry';
import { AuthorizeRequest, Direction, Verdict, type McpListedTool } from '@airlock/proto/authorization/v1';
import type { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NO_AUDIT, type DecisionRecord } from '../audit/event.ts';
import { Authorizer } from '../authz/authorize.ts';
import { decide } from '../authz/decide.ts';
import { DecisionState } from '../authz/decision-state.ts';
import { Quarantines } from '../incident/quarantines.ts';
import { createControlPlaneMetrics } from '../monitoring/metrics.ts';
import { PolicyEngine, toHost } from '../policy/engine.ts';
import { parsePolicyText } from '../policy/load.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { ToolPins } from './tool-pins.ts';

const TD = 'airlock.test';
const A = `spiffe://${TD}/ns/demo/sa/a`;
const B = `spiffe://${TD}/ns/demo/sa/b`;
const h = (c: string): string => c.repeat(64);

// Rug pulls on three external servers, one per onToolChange (d.example: none set, the default),
// and on the mesh agent b (quarantine).
const POLICY = `apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: all }
spec: { selector: { namespace: demo } }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: mesh }
spec: { from: { segments: [all] }, to: { segments: [all] }, rules: [ { paths: [/mcp], mcp: { onToolChange: quarantine } } ], action: allow }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: alerting }
spec: { from: { segments: [all] }, to: { hosts: [a.example] }, rules: [ { paths: [/mcp], mcp: { methods: ["*"], onToolChange: alert } } ], action: allow }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: defaulting }
spec: { from: { segments: [all] }, to: { hosts: [d.example] }, action: allow }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: quarantining }
spec: { from: { segments: [all] }, to: { hosts: [q.example] }, rules: [ { paths: [/mcp], mcp: { onToolChange: quarantine } } ], action: allow }
`;

describe('MCP tool pinning in the control plane', () => {
  let dir: string;
  let store: SqliteStore;
  let decisions: DecisionState;
  let pins: ToolPins;
  let registry: Registry;
  let authorizer: Authorizer;
  let audited: DecisionRecord[];

  const open = async (): Promise<void> => {
    store = SqliteStore.open(dir);
    decisions = new DecisionState(new PolicyEngine(parsePolicyText(POLICY, 'p.yaml'), TD, 1));
    decisions.replace({ agents: new Map([[B, { spiffeId: B, inboundAddress: '127.0.0.1:9', updatedAt: 1, labels: {} }]]) });
    const quarantines = await Quarantines.load(store, decisions);
    registry = createRegistry('test');
    pins = await ToolPins.load({ store, decisions, registry, logger: pino({ level: 'silent' }), quarantine: (r) => quarantines.quarantine(r) });
    audited = [];
    authorizer = new Authorizer({ trustDomain: TD, decisions: () => decisions.current(), metrics: createControlPlaneMetrics(registry), audit: { ...NO_AUDIT, decision: (r) => void audited.push(r) }, toolPins: pins });
  };
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-pins-'));
    await open();
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const ask = (host: string, over: Partial<AuthorizeRequest>) =>
    authorizer.authorize(parseSpiffeId(A), AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: A, destinationHost: host, destinationPort: 443, method: 'POST', path: '/mcp', ...over }));
  const list = (host: string, tools: Partial<McpListedTool>[]) => {
    const pinsOf = tools.map((t) => ({ name: 'x', hash: h('0'), flags: [], ...t }));
    return ask(host, { mcpMethod: 'tools/list', mcpListedTools: [...new Set(pinsOf.map((t) => t.name))], mcpListedToolPins: pinsOf });
  };
  const call = (host: string, tool: string) => ask(host, { mcpMethod: 'tools/call', mcpTool: tool });
  const lastPins = () => audited.at(-1)?.mcp?.toolPins;
  const events = async (event: string, action: string): Promise<number> =>
    (await registry.getSingleMetric('airlock_mcp_tool_pin_events_total')?.get())?.values.find((v) => v.labels.event === event && v.labels.action === action)?.value ?? 0;

  it('pins on first sight; a changed tool is left out of tools/list and its calls denied (tool_changed) until accepted, by default', async () => {
    expect(list('d.example', [{ name: 'search', hash: h('a') }, { name: 'fetch', hash: h('b') }]).mcpAllowedTools).toEqual(['search', 'fetch']);
    expect(lastPins()).toBeUndefined();
    expect(call('d.example', 'search').verdict).toBe(Verdict.VERDICT_ALLOW);
    // The rug pull: search's description changed.
    expect(list('d.example', [{ name: 'search', hash: h('c') }, { name: 'fetch', hash: h('b') }]).mcpAllowedTools).toEqual(['fetch']);
    expect(lastPins()).toEqual([{ tool: 'search', change: 'changed', action: 'deny', pinned: h('a'), seen: h('c') }]);
    expect(await events('changed', 'deny')).toBe(1);
    const denied = call('d.example', 'search');
    expect(denied).toMatchObject({ verdict: Verdict.VERDICT_DENY, policy: '', rule: '' });
    expect(denied.reason).toMatch(/^tool_changed: the MCP tool "search" changed since it was pinned/);
    expect(call('d.example', 'fetch').verdict).toBe(Verdict.VERDICT_ALLOW);
    // The same tool on another server, and the same server on another port, are other pins.
    expect(decide(decisions.current(), { source: parseSpiffeId(A), destination: toHost('d.example'), port: 8443, method: 'POST', path: '/mcp', mcp: { method: 'tools/call', tool: 'search' } }).decision.allow).toBe(true);
    // Seen again: still withheld, reported once.
    expect(list('d.example', [{ name: 'search', hash: h('c') }]).mcpAllowedTools).toEqual([]);
    expect(lastPins()).toBeUndefined();
    await expect(pins.accept('d.example:443', 'search', h('9'), 'alice')).rejects.toMatchObject({ code: ErrorCode.Conflict });
    await pins.accept('d.example:443', 'search', undefined, 'alice');
    expect(call('d.example', 'search').verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(list('d.example', [{ name: 'search', hash: h('c') }]).mcpAllowedTools).toEqual(['search']);
    await expect(pins.accept('d.example:443', 'search', undefined, 'alice')).rejects.toMatchObject({ code: ErrorCode.Conflict });
    await expect(pins.accept('d.example:443', 'nothing', undefined, 'alice')).rejects.toMatchObject({ code: ErrorCode.NotFound });
  });

  it('a server going back to the pinned version is let through again; a restart keeps pins and pending versions', async () => {
    list('d.example', [{ name: 'search', hash: h('a') }, { name: 'fetch', hash: h('b') }]);
    list('d.example', [{ name: 'search', hash: h('c') }, { name: 'fetch', hash: h('d') }]);
    list('d.example', [{ name: 'search', hash: h('a') }, { name: 'fetch', hash: h('d') }]);
    expect(call('d.example', 'search').verdict).toBe(Verdict.VERDICT_ALLOW);
    // Stored behind the decision: let the writes land, then start over from the store.
    await new Promise((r) => setImmediate(r));
    await store.close();
    await open();
    expect(call('d.example', 'fetch').reason).toMatch(/^tool_changed/);
    expect(call('d.example', 'search').verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(list('d.example', [{ name: 'search', hash: h('a') }, { name: 'fetch', hash: h('d') }]).mcpAllowedTools).toEqual(['search']);
  });

  it('alert: the changed tool stays listed and callable, with an audit finding and a metric', async () => {
    list('a.example', [{ name: 'search', hash: h('a') }]);
    expect(list('a.example', [{ name: 'search', hash: h('b') }]).mcpAllowedTools).toEqual(['search']);
    expect(lastPins()).toEqual([{ tool: 'search', change: 'changed', action: 'alert', pinned: h('a'), seen: h('b') }]);
    expect(await events('changed', 'alert')).toBe(1);
    expect(call('a.example', 'search').verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(pins.list('a.example:443')[0]).toMatchObject({ hash: h('a'), pending: { hash: h('b'), action: 'alert' } });
  });

  it('a tool flagged by a detector at first sight is not pinned, and is withheld (tool_flagged); the audit names the detector', async () => {
    expect(list('d.example', [{ name: 'add', hash: h('a'), flags: ['hidden-instructions@1', 'instruction-tags@1'] }, { name: 'sub', hash: h('b') }]).mcpAllowedTools).toEqual(['sub']);
    expect(lastPins()).toEqual([{ tool: 'add', change: 'flagged', action: 'deny', seen: h('a'), detectors: ['hidden-instructions@1', 'instruction-tags@1'] }]);
    expect(call('d.example', 'add').reason).toMatch(/^tool_flagged: .*flagged by hidden-instructions@1, instruction-tags@1/);
    await pins.accept('d.example:443', 'add', h('a'), 'alice');
    expect(call('d.example', 'add').verdict).toBe(Verdict.VERDICT_ALLOW);
    // A pinned tool that changes into a flagged one: changed, with its detectors.
    list('d.example', [{ name: 'sub', hash: h('c'), flags: ['invisible-unicode@1'] }]);
    expect(lastPins()).toEqual([{ tool: 'sub', change: 'changed', action: 'deny', pinned: h('b'), seen: h('c'), detectors: ['invisible-unicode@1'] }]);
  });

  it('quarantine: the mesh server is quarantined; an external host cannot be, and its tool is denied instead', async () => {
    list('b.demo', [{ name: 'search', hash: h('a') }]);
    expect(list('b.demo', [{ name: 'search', hash: h('b') }]).mcpAllowedTools).toEqual([]);
    expect(lastPins()).toEqual([{ tool: 'search', change: 'changed', action: 'quarantine', pinned: h('a'), seen: h('b') }]);
    await new Promise((r) => setImmediate(r));
    expect(decisions.current().quarantined.get(B)).toMatchObject({ actor: 'tool-pinning' });
    expect(ask('b.demo', { method: 'GET', path: '/health' }).reason).toBe('quarantined');
    list('q.example', [{ name: 'search', hash: h('a') }]);
    expect(list('q.example', [{ name: 'search', hash: h('b') }]).mcpAllowedTools).toEqual([]);
    expect(lastPins()).toEqual([{ tool: 'search', change: 'changed', action: 'deny', pinned: h('a'), seen: h('b'), note: 'an external host cannot be quarantined: denied instead' }]);
    expect(call('q.example', 'search').reason).toMatch(/^tool_changed/);
  });

  it('a name listed twice with two definitions is withheld; reports over the bounds are refused', () => {
    expect(list('d.example', [{ name: 'search', hash: h('a') }, { name: 'search', hash: h('b') }, { name: 'ok', hash: h('c') }]).mcpAllowedTools).toEqual(['ok']);
    expect(lastPins()).toEqual([{ tool: 'search', change: 'ambiguous', action: 'deny' }]);
    // Hashes sent with anything but a tools/list filter pin nothing.
    ask('d.example', { mcpMethod: 'tools/call', mcpTool: 'zzz', mcpListedToolPins: [{ name: 'zzz', hash: h('a'), flags: [] }] });
    expect(pins.list('d.example:443').map((p) => p.tool)).toEqual(['ok']);
    expect(() => list('d.example', [{ name: 'x', hash: 'A'.repeat(64) }])).toThrow(/hash/);
    expect(() => list('d.example', [{ name: 'n'.repeat(257) }])).toThrow(/name/);
    expect(() => list('d.example', [{ name: 'x', flags: Array.from({ length: 17 }, () => 'f@1') }])).toThrow(/flags/);
    expect(() => list('d.example', Array.from({ length: 1001 }, (_, i) => ({ name: `t${i}` })))).toThrow(/more than 1000/);
  });
});
