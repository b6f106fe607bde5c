import { parseSpiffeId } from '@airlock/common/spiffe';
import { createRegistry } from '@airlock/common/telemetry';
import { AuthorizeRequest, Direction, Verdict } from '@airlock/proto/authorization/v1';
import { describe, expect, it } from 'vitest';
import { NO_AUDIT, type AuditLog } from '../audit/event.ts';
import { createControlPlaneMetrics } from '../monitoring/metrics.ts';
import { PolicyEngine } from '../policy/engine.ts';
import { parsePolicyText } from '../policy/load.ts';
import type { AgentRecord } from '../store/store.ts';
import { Authorizer } from './authorize.ts';
import { DecisionState, type DecisionSnapshot } from './decision-state.ts';
import { McpBodyScopes, MCP_BODY_REQUIRED_REASON } from './mcp-body.ts';

const TD = 'airlock.test';
const A = `spiffe://${TD}/ns/demo/sa/a`;
const B = `spiffe://${TD}/ns/demo/sa/b`;
const C = `spiffe://${TD}/ns/demo/sa/c`;

const BASE = `apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: all }
spec: { selector: { namespace: demo } }
---
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: b }
spec: { selector: { spiffeIds: ["${B}"] } }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: p }
spec: { from: { segments: [all] }, to: { segments: [all] }, action: allow }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: ext }
spec: { from: { segments: [all] }, to: { hosts: [api.example.com] }, action: allow }
`;
const DENY_DELETE = `---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: no-delete }
spec: { from: { segments: [all] }, to: { segments: [b] }, rules: [ { mcp: { tools: [delete] } } ], action: deny }
`;

const engine = (text: string, version: number) => new PolicyEngine(parsePolicyText(text, 'p.yaml'), TD, version);
const agents = new Map<string, AgentRecord>([B, C].map((id) => [id, { spiffeId: id, inboundAddress: '10.0.0.2:15006', updatedAt: 1 }]));

function authorizerOn(state: () => DecisionSnapshot, audit: AuditLog = NO_AUDIT): Authorizer {
  return new Authorizer({ trustDomain: TD, decisions: state, metrics: createControlPlaneMetrics(createRegistry('test')), audit });
}
const outbound = (over: Partial<AuthorizeRequest>): AuthorizeRequest =>
  AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: A, destinationHost: 'b.demo', destinationPort: 8080, method: 'POST', path: '/mcp', ...over });

describe('a body the sidecar skipped for MCP', () => {
  const snapshot = (text: string, version: number): DecisionSnapshot => ({ engine: engine(text, version), agents, revoked: new Set(), quarantined: new Map() });

  it('is judged as a call without MCP where no rule reads MCP', () => {
    const res = authorizerOn(() => snapshot(BASE, 1)).authorize(parseSpiffeId(A), outbound({ mcpBodySkipped: true }));
    expect(res).toMatchObject({ verdict: Verdict.VERDICT_ALLOW, mcpBodyRequired: false });
  });

  it('is never judged as "no MCP" where the current policy reads it: read it and ask again (egress and ingress), not audited', () => {
    const audited: unknown[] = [];
    const audit: AuditLog = { ...NO_AUDIT, decision: (e) => void audited.push(e) };
    const auth = authorizerOn(() => snapshot(BASE + DENY_DELETE, 2), audit);
    const egress = auth.authorize(parseSpiffeId(A), outbound({ mcpBodySkipped: true }));
    expect(egress).toMatchObject({ verdict: Verdict.VERDICT_DENY, mcpBodyRequired: true, reason: MCP_BODY_REQUIRED_REASON, policyVersion: 2, ticket: '' });
    const ingress = auth.authorize(parseSpiffeId(B), outbound({ direction: Direction.DIRECTION_INBOUND, destinationSpiffeId: B, mcpBodySkipped: true }));
    expect(ingress).toMatchObject({ verdict: Verdict.VERDICT_DENY, mcpBodyRequired: true });
    expect(audited).toEqual([]);
    // Read and asked again: decided on the body.
    expect(auth.authorize(parseSpiffeId(A), outbound({ mcpMethod: 'tools/call', mcpTool: 'delete', mcpArguments: '{}' }))).toMatchObject({ verdict: Verdict.VERDICT_DENY, mcpBodyRequired: false, policy: 'no-delete' });
    // Another agent, no rule on MCP: skipped and allowed.
    expect(auth.authorize(parseSpiffeId(A), outbound({ destinationHost: 'c.demo', mcpBodySkipped: true }))).toMatchObject({ verdict: Verdict.VERDICT_ALLOW });
  });

  it('is read for a pinned MCP server, whose tools/call the pin check judges', () => {
    const pinned = { ...snapshot(BASE, 1), toolPins: new Map([[C, new Map()], ['api.example.com:443', new Map()]]) };
    const auth = authorizerOn(() => pinned);
    expect(auth.authorize(parseSpiffeId(A), outbound({ destinationHost: 'c.demo', mcpBodySkipped: true }))).toMatchObject({ mcpBodyRequired: true });
    expect(auth.authorize(parseSpiffeId(A), outbound({ destinationHost: 'api.example.com', destinationPort: 443, mcpBodySkipped: true }))).toMatchObject({ mcpBodyRequired: true });
    expect(auth.authorize(parseSpiffeId(A), outbound({ destinationHost: 'b.demo', mcpBodySkipped: true }))).toMatchObject({ verdict: Verdict.VERDICT_ALLOW });
  });
});

describe('the scope pushed to sidecars', () => {
  it('follows each policy version and pin change, once per change', () => {
    const state = new DecisionState(engine(BASE, 1));
    const scopes = new McpBodyScopes(state);
    let pushes = 0;
    scopes.onChange(() => pushes++);
    expect(scopes.current()).toMatchObject({ policyVersion: 1, all: false, allAgents: false, spiffeIds: [], hosts: [], hostSuffixes: [] });
    state.replace({ engine: engine(BASE + DENY_DELETE, 2) });
    expect(scopes.current()).toMatchObject({ policyVersion: 2, spiffeIds: [B], hosts: ['b.demo'] });
    state.replace({ agents: new Map() });
    expect(pushes).toBe(1);
    state.replace({ toolPins: new Map([[C, new Map()], ['mcp.example.com:8443', new Map()]]) });
    expect(scopes.current()).toMatchObject({ policyVersion: 2, spiffeIds: [B, C], hosts: ['b.demo', 'c.demo', 'mcp.example.com'] });
    expect(pushes).toBe(2);
  });

  it('lists the registered members of a segment chosen by namespace, and follows registrations', () => {
    const byNamespace = BASE + DENY_DELETE.replace('to: { segments: [b] }', 'to: { segments: [all] }');
    const state = new DecisionState(engine(byNamespace, 3));
    const scopes = new McpBodyScopes(state);
    expect(scopes.current()).toMatchObject({ policyVersion: 3, allAgents: false, spiffeIds: [], hosts: [] });
    state.replace({ agents: new Map([...agents, [`spiffe://${TD}/ns/other/sa/x`, { spiffeId: `spiffe://${TD}/ns/other/sa/x`, inboundAddress: '10.0.0.3:15006', updatedAt: 1 }]]) });
    expect(scopes.current()).toMatchObject({ spiffeIds: [B, C], hosts: ['b.demo', 'c.demo'] });
    // An agent not yet in the pushed list: the control plane's own check still asks for its body.
    const auth = authorizerOn(() => ({ engine: engine(byNamespace, 3), agents, revoked: new Set(), quarantined: new Map() }));
    expect(auth.authorize(parseSpiffeId(A), outbound({ destinationHost: 'c.demo', mcpBodySkipped: true }))).toMatchObject({ mcpBodyRequired: true });
  });
});
