import { describe, expect, it } from 'vitest';
import { denialClass, inWindow, namesIdentity, parseWindow, ReportBuilder, type AuditEventJson } from './evidence.ts';

const A = 'spiffe://e2e.test/ns/agents/sa/planner';
const B = 'spiffe://e2e.test/ns/agents/sa/researcher';
const C = 'spiffe://e2e.test/ns/agents/sa/payments';
const NOW = Date.parse('2026-12-04T12:00:00Z');
const at = (iso: string): string => new Date(Date.parse(iso)).toISOString();

const decision = (o: Partial<Record<string, unknown>> = {}): AuditEventJson => ({ kind: 'decision', time: at('2026-12-04T11:00:00Z'), direction: 'outbound', source: A, destination: B, verdict: 'allow', mode: 'enforce', policy: 'p', reason: 'allowed', ...o });
const admin = (action: string, target: string, o: Partial<Record<string, unknown>> = {}): AuditEventJson => ({ kind: 'admin', time: at('2026-12-04T11:00:00Z'), actor: 'ops', role: 'responder', action, target, detail: {}, ...o });

describe('the time window', () => {
  it('takes RFC 3339 times with their offset and durations before now', () => {
    expect(parseWindow('2026-12-04T10:00:00Z', '2026-12-04T13:00:00+02:00', NOW)).toEqual({ since: Date.parse('2026-12-04T10:00:00Z'), until: Date.parse('2026-12-04T11:00:00Z') });
    expect(parseWindow('24h', undefined, NOW)).toEqual({ since: NOW - 86_400_000 });
    expect(parseWindow('90m', '30s', NOW)).toEqual({ since: NOW - 5_400_000, until: NOW - 30_000 });
  });

  it('refuses what is not a time, a time without its offset, and an empty window, naming the flag', () => {
    expect(() => parseWindow(undefined, undefined, NOW)).toThrow(/--since T is required/);
    for (const bad of ['yesterday', '2026-12-04', '2026-12-04T10:00:00', '2026-13-45T10:00:00Z', '-1h', '24x', '']) {
      expect(() => parseWindow(bad, undefined, NOW), bad).toThrow(/--since: /);
    }
    expect(() => parseWindow('1h', 'soon', NOW)).toThrow(/--until: /);
    expect(() => parseWindow('1h', '2h', NOW)).toThrow(/--until .* must be after --since/);
  });

  it('holds events from since (included) to until (excluded); an event without a time is in none', () => {
    const w = parseWindow('2026-12-04T10:00:00Z', '2026-12-04T11:00:00Z', NOW);
    expect(inWindow(decision({ time: '2026-12-04T10:00:00.000Z' }), w)).toBe(true);
    expect(inWindow(decision({ time: '2026-12-04T10:59:59.999Z' }), w)).toBe(true);
    expect(inWindow(decision({ time: '2026-12-04T11:00:00.000Z' }), w)).toBe(false);
    expect(inWindow(decision({ time: '2026-12-04T09:59:59.999Z' }), w)).toBe(false);
    expect(inWindow(decision({ time: undefined }), w)).toBe(false);
    expect(inWindow(decision({ time: 'garbage' }), w)).toBe(false);
  });
});

describe('which events name an identity', () => {
  it('a decision as source or destination, either direction', () => {
    expect(namesIdentity(decision(), A)).toBe(true);
    expect(namesIdentity(decision({ direction: 'inbound' }), B)).toBe(true);
    expect(namesIdentity(decision(), C)).toBe(false);
    expect(namesIdentity(decision({ destination: '', host: A }), C)).toBe(false);
  });

  it('an identity that is a prefix of another is not it', () => {
    expect(namesIdentity(decision({ source: `${A}-2` }), A)).toBe(false);
    expect(namesIdentity(admin('agent.quarantine', `${A}/x`), A)).toBe(false);
  });

  it('refusals of its requests, admin actions on it or by it, approvals of its calls', () => {
    expect(namesIdentity({ kind: 'refusal', time: '', operation: 'SignCertificate', reasonCode: 'quarantined', reason: 'q', caller: A }, A)).toBe(true);
    expect(namesIdentity({ kind: 'refusal', time: '', operation: 'Authorize', reasonCode: 'permission_denied', reason: 'x', caller: B, request: { source: A, destination: C } }, A)).toBe(true);
    expect(namesIdentity({ kind: 'refusal', time: '', operation: 'Authorize', reasonCode: 'permission_denied', reason: 'x', caller: B, request: { source: A, destination: C } }, C)).toBe(true);
    expect(namesIdentity(admin('agent.quarantine', A), A)).toBe(true);
    expect(namesIdentity(admin('agent.release', A), A)).toBe(true);
    expect(namesIdentity(admin('agent.revoke', A), B)).toBe(false);
    expect(namesIdentity(admin('approval.approve', 'a1b2', { detail: { source: A, destination: B, tool: 't' } }), B)).toBe(true);
    expect(namesIdentity(admin('policy.apply', 'version 3', { actor: A }), A)).toBe(true);
    expect(namesIdentity(admin('policy.apply', 'version 3'), A)).toBe(false);
  });

  it('never the chain events; a later kind by its usual fields', () => {
    expect(namesIdentity({ kind: 'chain-start', time: '', source: A }, A)).toBe(false);
    expect(namesIdentity({ kind: 'checkpoint', time: '', target: A }, A)).toBe(false);
    expect(namesIdentity({ kind: 'anomaly', time: '', identity: A }, A)).toBe(true);
    expect(namesIdentity({ kind: 'anomaly', time: '', identity: B }, A)).toBe(false);
  });
});

describe('denial classes', () => {
  it('name why, from the fields and the stable reasons', () => {
    expect(denialClass(decision({ verdict: 'deny', policy: '', reason: 'no policy allows GET /x' }))).toBe('no_policy');
    expect(denialClass(decision({ verdict: 'deny', policy: 'deny-writes', reason: 'denied by policy deny-writes' }))).toBe('policy_deny');
    expect(denialClass(decision({ verdict: 'deny', policy: '', reason: 'quarantined' }))).toBe('quarantined');
    expect(denialClass(decision({ verdict: 'deny', policy: '', reason: 'identity revoked' }))).toBe('revoked');
    expect(denialClass(decision({ verdict: 'deny', policy: '', reason: 'threat_feed: evil.example is listed by threat feed "x"' }))).toBe('threat_feed');
    expect(denialClass(decision({ verdict: 'deny', policy: '', reason: 'secret_detected: aws-access-key@1 in header:x-key' }))).toBe('secret');
    expect(denialClass(decision({ verdict: 'deny', policy: '', reason: 'anomaly: new flow GET b.demo /v1/{id}' }))).toBe('anomaly');
    expect(denialClass(decision({ verdict: 'deny', policy: '', reason: 'rate limited: x', rateLimit: { name: 'r', per: 'source', mode: 'enforce', retryAfterMs: 10 } }))).toBe('rate_limited');
    expect(denialClass(decision({ verdict: 'deny', policy: '', reason: 'tool_changed: t changed since pinned' }))).toBe('tool_pin');
    expect(denialClass(decision({ verdict: 'deny', policy: 'p', reason: 'approval_denied: ops denied this call', approval: { id: '1', state: 'denied' } }))).toBe('approval');
    expect(denialClass(decision({ verdict: 'deny', policy: '', reason: 'x', mcp: { headerMismatch: 'Mcp-Name says a, the body b' } }))).toBe('header_mismatch');
    expect(denialClass(decision({ verdict: 'deny', policy: '', reason: 'no policy allows POST /mcp: the body is not a readable MCP request (not JSON)', mcp: { unreadable: 'not JSON' } }))).toBe('no_policy');
    expect(denialClass(decision({ verdict: 'deny', policy: '', reason: 'ambiguous path /a/%2e%2e/b' }))).toBe('ambiguous_path');
  });
});

describe('the evidence report', () => {
  it('counts what is in the window, by direction, class, policy and action', () => {
    const r = new ReportBuilder(parseWindow('2026-12-04T10:00:00Z', '2026-12-04T12:00:00Z', NOW));
    const events: AuditEventJson[] = [
      decision(),
      decision({ direction: 'inbound' }),
      decision({ verdict: 'deny', policy: '', reason: 'no policy allows' }),
      decision({ verdict: 'deny', policy: '', reason: 'no policy allows', direction: 'inbound' }),
      decision({ verdict: 'deny', policy: 'deny-writes', reason: 'denied' }),
      decision({ verdict: 'deny', policy: '', reason: 'quarantined' }),
      decision({ verdict: 'deny', policy: '', reason: 'rate limited', rateLimit: { name: 'r', per: 'source', mode: 'enforce', retryAfterMs: 1 } }),
      decision({ verdict: 'allow', mode: 'dry-run', policy: 'dry', reason: 'would deny' }),
      decision({ verdict: 'allow', mode: 'dry-run', policy: 'dry', reason: 'would deny', rateLimit: { name: 'r', per: 'source', mode: 'dry-run', retryAfterMs: 1 } }),
      decision({ verdict: 'pending', approval: { id: '1', state: 'pending' } }),
      decision({ mcp: { method: 'tools/list', toolPins: [{ tool: 't', change: 'changed', action: 'alert' }] } }),
      { kind: 'refusal', time: at('2026-12-04T11:00:00Z'), operation: 'SignCertificate', reasonCode: 'quarantined', reason: 'q' },
      { kind: 'refusal', time: at('2026-12-04T11:00:00Z'), operation: 'Authorize', reasonCode: 'permission_denied', reason: 'x' },
      admin('agent.quarantine', A),
      admin('agent.release', A, { detail: { wasQuarantined: true } }),
      admin('agent.release', A, { detail: { wasQuarantined: false } }),
      admin('agent.revoke', C),
      admin('approval.approve', '1'),
      admin('approval.deny', '2'),
      admin('approval.timeout', '3'),
      admin('ca.prepare', 'r2'),
      admin('ca.activate', 'r2'),
      admin('policy.apply', 'version 2'),
      admin('policy.rollback', 'version 3'),
      admin('join-token.create', 'j'),
      admin('api-token.create', 'n'),
      admin('api-token.revoke', 'n'),
      { kind: 'anomaly', time: at('2026-12-04T11:00:00Z'), identity: A },
      { kind: 'chain-start', time: at('2026-12-04T11:00:00Z') },
      // Outside the window: counted nowhere.
      decision({ time: at('2026-12-04T09:59:59Z'), verdict: 'deny', policy: '' }),
      admin('agent.quarantine', A, { time: at('2026-12-04T12:00:00Z') }),
    ];
    for (const e of events) r.add(e);
    const got = r.finish();
    expect(got.window).toEqual({ since: '2026-12-04T10:00:00.000Z', until: '2026-12-04T12:00:00.000Z' });
    expect(got.events).toBe(events.length - 2);
    expect(got.decisions.total).toBe(11);
    expect(got.decisions.byDirection).toEqual({ 'outbound.allow': 4, 'inbound.allow': 1, 'outbound.deny': 4, 'inbound.deny': 1, 'outbound.pending': 1 });
    expect(got.decisions.denialsByClass).toEqual({ no_policy: 2, policy_deny: 1, quarantined: 1, rate_limited: 1 });
    expect(got.decisions.topDenyingPolicies).toEqual([{ policy: '(no policy)', denials: 4 }, { policy: 'deny-writes', denials: 1 }]);
    expect(got.decisions.dryRunWouldDeny).toBe(2);
    expect(got.decisions.rateLimited).toBe(1);
    expect(got.decisions.toolPinFindings).toBe(1);
    expect(got.refusals).toEqual({ total: 2, byReasonCode: { quarantined: 1, permission_denied: 1 } });
    expect(got.certificates).toEqual({ caChanges: { 'ca.prepare': 1, 'ca.activate': 1 }, signRefusals: 1 });
    expect(got.quarantines).toEqual({ quarantined: 1, released: 1, revoked: 1 });
    expect(got.approvals).toEqual({ held: 1, approved: 1, denied: 1, timedOut: 1 });
    expect(got.anomalies).toBe(1);
    expect(got.admin.total).toBe(14);
    expect(got.admin.policyVersions).toEqual([2, 3]);
    expect(got.admin.tokensCreated).toBe(2);
    expect(got.admin.tokensRevoked).toBe(1);
  });
});
