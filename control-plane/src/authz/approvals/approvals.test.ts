import { parseSpiffeId } from '@airlock/common/spiffe';
import { createRegistry } from '@airlock/common/telemetry';
import { AuthorizeRequest, Direction, Verdict, type AuthorizeResponse } from '@airlock/proto/authorization/v1';
import { describe, expect, it } from 'vitest';
import type { AdminRecord, AuditLog, DecisionRecord } from '../../audit/event.ts';
import { createControlPlaneMetrics } from '../../monitoring/metrics.ts';
import { PolicyEngine } from '../../policy/engine.ts';
import { parsePolicyText } from '../../policy/load.ts';
import type { AgentRecord } from '../../store/store.ts';
import { Authorizer } from '../authorize.ts';
import { Approvals } from './approvals.ts';

const TD = 'airlock.test';
const A = `spiffe://${TD}/ns/demo/sa/a`;
const C = `spiffe://${TD}/ns/demo/sa/c`;
const B = `spiffe://${TD}/ns/demo/sa/b`;

const POLICY =
  `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: all }\nspec: { selector: { namespace: demo } }\n---\n` +
  `apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec:\n  from: { segments: [all] }\n  to: { segments: [all] }\n  rules:\n` +
  `    - { mcp: { methods: [tools/call], tools: [transfer] }, approve: required, approvalTimeout: 60s }\n    - { mcp: { methods: ['*'] } }\n  action: allow\n`;

function setup(limits = { perAgent: 2, total: 3 }) {
  const agents = new Map<string, AgentRecord>([[B, { spiffeId: B, inboundAddress: '127.0.0.1:9', updatedAt: 1 }]]);
  const engine = new PolicyEngine(parsePolicyText(POLICY, 'p.yaml'), TD);
  const decisions: DecisionRecord[] = [];
  const admin: AdminRecord[] = [];
  const audit: AuditLog = { decision: (r) => decisions.push(r), refusal: () => undefined, admin: (r) => admin.push(r), anomaly: () => undefined, accepting: () => true };
  const registry = createRegistry('test');
  const metrics = createControlPlaneMetrics(registry);
  const approvals = new Approvals({ limits });
  const authorizer = new Authorizer({ trustDomain: TD, decisions: () => ({ engine, agents, revoked: new Set<string>(), quarantined: new Map() }), metrics, audit, approvals });
  return { authorizer, approvals, decisions, registry };
}

const call = (source: string, args: string, over: Partial<AuthorizeRequest> = {}): AuthorizeRequest =>
  AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: source, destinationHost: 'b.demo', destinationPort: 80, method: 'POST', path: '/mcp', mcpMethod: 'tools/call', mcpTool: 'transfer', mcpArguments: args, ...over });

describe('human approval through the Authorizer: one approval, one exact call', () => {
  it('holds the call; the wait for it is released only by its approval, once, and the inbound hop passes once', async () => {
    const { authorizer, approvals, decisions, registry } = setup();
    const held = authorizer.authorize(parseSpiffeId(A), call(A, '{"amount":5,"to":"x"}'));
    expect(held).toMatchObject({ verdict: Verdict.VERDICT_APPROVAL_PENDING, ticket: '', upstream: undefined });
    expect(await registry.getSingleMetricAsString('airlock_authz_decisions_total')).toMatch(/direction="outbound",verdict="pending",reason_class="policy"[^}]*\} 1$/m);
    expect(decisions.at(-1)).toMatchObject({ verdict: 'pending', reason: `held for a human approval (${held.approvalId}) by policy "p"`, approval: { id: held.approvalId, state: 'pending' } });
    const wait = authorizer.authorizeHeld(parseSpiffeId(A), call(A, '{ "to": "x", "amount": 5 }', { approvalId: held.approvalId }));
    approvals.decide(held.approvalId, true, 'alice', undefined);
    // Same call in another key order and spacing: the canonical arguments match.
    const released = await wait;
    expect(released).toMatchObject({ verdict: Verdict.VERDICT_ALLOW, ticket: '', upstream: { spiffeId: B } });
    expect(decisions.at(-1)).toMatchObject({ verdict: 'allow', approval: { id: held.approvalId, state: 'approved', by: 'alice' } });
    // Replay: the same approval id again is unknown, denied.
    const replay = await authorizer.authorizeHeld(parseSpiffeId(A), call(A, '{"amount":5,"to":"x"}', { approvalId: held.approvalId }));
    expect(replay).toMatchObject({ verdict: Verdict.VERDICT_DENY, approvalOutcome: 'approval_unknown' });
    // The destination's sidecar: the approved call passes once; the same call again, or another, does not.
    const inbound = (args: string): AuthorizeResponse => authorizer.authorize(parseSpiffeId(B), call(A, args, { direction: Direction.DIRECTION_INBOUND, destinationSpiffeId: B, destinationHost: 'b.demo', destinationPort: 8443 }));
    expect(inbound('{"amount":6,"to":"x"}').verdict).toBe(Verdict.VERDICT_DENY);
    expect(inbound('{"amount":5,"to":"x"}').verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(inbound('{"amount":5,"to":"x"}')).toMatchObject({ verdict: Verdict.VERDICT_DENY, reason: expect.stringMatching(/none was given for this exact call/) as unknown });
  });

  it('an approval never releases another call: other arguments, another tool, another path, another source', async () => {
    const { authorizer, approvals } = setup({ perAgent: 8, total: 8 });
    const held = authorizer.authorize(parseSpiffeId(A), call(A, '{"amount":5}'));
    approvals.decide(held.approvalId, true, 'alice', undefined);
    for (const [who, req] of [
      [A, call(A, '{"amount":500}', { approvalId: held.approvalId })],
      [A, call(A, '{"amount":5,"extra":1}', { approvalId: held.approvalId })],
      [A, call(A, '{"amount":"5"}', { approvalId: held.approvalId })],
      [A, call(A, '{"amount":5}', { approvalId: held.approvalId, mcpTool: 'transfer2' })],
      [A, call(A, '{"amount":5}', { approvalId: held.approvalId, path: '/mcp2' })],
      [A, call(A, '', { approvalId: held.approvalId, mcpArgumentsUnreadable: 'too large' })],
      [C, call(C, '{"amount":5}', { approvalId: held.approvalId })],
    ] as const) {
      expect(await authorizer.authorizeHeld(parseSpiffeId(who), req)).toMatchObject({ verdict: Verdict.VERDICT_DENY, approvalOutcome: 'approval_unknown' });
    }
    // An approval id on a plain ask (not the wait) is no approval either.
    expect(authorizer.authorize(parseSpiffeId(A), call(A, '{"amount":5}', { approvalId: held.approvalId }))).toMatchObject({ verdict: Verdict.VERDICT_DENY, approvalOutcome: 'approval_unknown' });
    // The approved call itself is still released (the attempts above did not take it).
    expect(await authorizer.authorizeHeld(parseSpiffeId(A), call(A, '{"amount":5}', { approvalId: held.approvalId }))).toMatchObject({ verdict: Verdict.VERDICT_ALLOW });
  });

  it('a denial is approval_denied with who and why; unreadable arguments are never held; the bounds refuse, counted', async () => {
    const { authorizer, approvals, decisions, registry } = setup({ perAgent: 2, total: 3 });
    const held = authorizer.authorize(parseSpiffeId(A), call(A, '{"amount":1}'));
    const wait = authorizer.authorizeHeld(parseSpiffeId(A), call(A, '{"amount":1}', { approvalId: held.approvalId }));
    approvals.decide(held.approvalId, false, 'bob', 'no');
    expect(await wait).toMatchObject({ verdict: Verdict.VERDICT_DENY, approvalOutcome: 'approval_denied', policy: 'p', reason: 'approval_denied: bob denied this call (no)' });
    expect(decisions.at(-1)).toMatchObject({ verdict: 'deny', approval: { state: 'denied', by: 'bob', reason: 'no' } });
    expect(authorizer.authorize(parseSpiffeId(A), call(A, '', { mcpArgumentsUnreadable: 'not JSON' }))).toMatchObject({ verdict: Verdict.VERDICT_DENY, reason: expect.stringMatching(/^approval_required: this call needs a human approval, and its arguments cannot be read/) as unknown });
    // Two per agent, three in all.
    expect(authorizer.authorize(parseSpiffeId(A), call(A, '{"n":1}')).verdict).toBe(Verdict.VERDICT_APPROVAL_PENDING);
    expect(authorizer.authorize(parseSpiffeId(A), call(A, '{"n":2}')).verdict).toBe(Verdict.VERDICT_APPROVAL_PENDING);
    expect(authorizer.authorize(parseSpiffeId(A), call(A, '{"n":3}'))).toMatchObject({ verdict: Verdict.VERDICT_DENY, reason: expect.stringMatching(/^approval_limit: .* already has 2 calls waiting/) as unknown });
    expect(authorizer.authorize(parseSpiffeId(C), call(C, '{"n":4}')).verdict).toBe(Verdict.VERDICT_APPROVAL_PENDING);
    expect(authorizer.authorize(parseSpiffeId(C), call(C, '{"n":5}'))).toMatchObject({ verdict: Verdict.VERDICT_DENY, reason: expect.stringMatching(/^approval_limit: 3 calls are already waiting/) as unknown });
    expect(await registry.getSingleMetricAsString('airlock_authz_refused_total')).toMatch(/reason="approval_limit".*} 2$/m);
    expect(approvals.pending()).toHaveLength(3);
  });

  it('a held call not decided in time is approval_timeout, and a late decision finds nothing', async () => {
    const approvals = new Approvals();
    const r = approvals.request({ source: A, destination: B, port: 0, method: 'POST', path: '/mcp', mcpMethod: 'tools/call', tool: 'transfer', arguments: {} }, { role: 'responder', timeoutMs: 1000 }, { decisionId: 'd', policy: 'p', rule: 'rules[0]' });
    expect(await approvals.wait(r.id, A, r.binding)).toMatchObject({ state: 'timeout' });
    expect(() => approvals.decide(r.id, true, 'late', undefined)).toThrow(/no approval .* is pending here/);
  });
});
