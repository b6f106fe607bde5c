import { randomBytes, randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { argumentsDigest, sealTicket, type TicketClaims } from '@airlock/common/ticket';
import { ReplayCache } from './replay-cache.ts';
import { TicketCheck, ticketHeader, type ReceivedCall } from './ticket-check.ts';

const A = 'spiffe://airlock.test/ns/demo/sa/alice';
const B = 'spiffe://airlock.test/ns/demo/sa/bob';
const NOW = 1_800_000_000_000;
const current = randomBytes(32);
const previous = randomBytes(32);

function setup(o: { revoked?: string[]; replays?: ReplayCache } = {}): { check: TicketCheck; now: { t: number } } {
  const now = { t: NOW };
  const keys = new Map([
    [2, current],
    [1, previous],
  ]);
  const trust = { ticketKey: (id: number) => keys.get(id), isContained: (id: string) => (o.revoked ?? []).includes(id) };
  return { check: new TicketCheck(trust, { now: () => now.t, ...(o.replays === undefined ? {} : { replays: o.replays }) }), now };
}

const call: ReceivedCall = { peer: A, self: B, instance: '10.0.0.2:15006', host: 'bob.demo', port: 8080, method: 'POST', path: '/v1/tools', mcp: { method: 'tools/call', tool: 'search', id: 1 } };
function claims(over: Partial<TicketClaims> = {}): TicketClaims {
  return { decisionId: randomUUID(), source: A, destination: B, instance: call.instance, host: call.host, port: call.port, method: call.method, path: call.path, mcpMethod: 'tools/call', mcpTool: 'search', mcpArgumentsDigest: '', policyVersion: 3, issuedAt: NOW - 100, expiresAt: NOW + 1900, ...over };
}
const seal = (c: TicketClaims, keyId = 2, key = current): string => sealTicket(c, { keyId, key }) ?? '';

describe('TicketCheck', () => {
  it('admits a ticket naming exactly this call, under the current or the previous key', () => {
    const { check } = setup();
    expect(check.check(seal(claims()), call)).toMatchObject({ admitted: true });
    expect(check.check(seal(claims(), 1, previous), call)).toMatchObject({ admitted: true });
    expect(check.check(seal(claims({ mcpMethod: '', mcpTool: '' })), { ...call, mcp: undefined })).toMatchObject({ admitted: true });
    // Tool arguments a rule judged: admitted when this body carries those very arguments.
    const withArgs = { ...call, mcp: { method: 'tools/call', tool: 'search', id: 1, arguments: { json: '{"q":"a"}' } } };
    expect(check.check(seal(claims({ mcpArgumentsDigest: argumentsDigest('{"q":"a"}') })), withArgs)).toMatchObject({ admitted: true });
  });

  it.each<[string, Partial<TicketClaims>, Partial<ReceivedCall>, string]>([
    ['another source than the peer', { source: B }, {}, 'wrong_source'],
    ['another destination', { destination: A }, {}, 'wrong_destination'],
    ['another instance of the destination', { instance: '10.0.0.3:15006' }, {}, 'wrong_instance'],
    ['another host', {}, { host: 'eve.demo' }, 'mismatch'],
    ['another port', {}, { port: 80 }, 'mismatch'],
    ['another method', {}, { method: 'DELETE' }, 'mismatch'],
    ['another method case', {}, { method: 'post' }, 'mismatch'],
    ['another path', {}, { path: '/v1/tools?x=1' }, 'mismatch'],
    ['another MCP tool', {}, { mcp: { method: 'tools/call', tool: 'delete_all', id: 1 } }, 'mismatch'],
    ['another MCP method', {}, { mcp: { method: 'tools/list', tool: '', id: 1 } }, 'mismatch'],
    ['no MCP message where the ticket names one', {}, { mcp: undefined }, 'mismatch'],
    ['a body unreadable as MCP', {}, { mcp: { unreadable: 'too large' } }, 'mismatch'],
    ['an MCP message the ticket does not name', { mcpMethod: '', mcpTool: '' }, {}, 'mismatch'],
    // Whether the body was inspected is bound: a skipped body's ticket names no MCP message, a read POST body always has one or is unreadable (no ticket).
    ['a ticket for a body the egress skipped, where this ingress read one it cannot parse', { mcpMethod: '', mcpTool: '' }, { mcp: { unreadable: 'the body is not valid JSON' } }, 'mismatch'],
    ['a ticket for a body the egress read, where this ingress skipped it', { mcpMethod: 'initialize', mcpTool: '' }, { mcp: undefined }, 'mismatch'],
    ['other tool arguments than the ones judged', { mcpArgumentsDigest: argumentsDigest('{"q":"a"}') }, { mcp: { method: 'tools/call', tool: 'search', id: 1, arguments: { json: '{"q":"b"}' } } }, 'mismatch'],
    ['tool arguments it cannot read where the ticket bound some', { mcpArgumentsDigest: argumentsDigest('{"q":"a"}') }, { mcp: { method: 'tools/call', tool: 'search', id: 1, arguments: { unreadable: 'duplicate key "q"' } } }, 'mismatch'],
    ['no tool arguments where the ticket bound some', { mcpArgumentsDigest: argumentsDigest('{"q":"a"}') }, {}, 'mismatch'],
    ['an expired ticket', { expiresAt: NOW }, {}, 'expired'],
    ['a ticket valid for longer than any may be', { expiresAt: NOW + 10_001, issuedAt: NOW }, {}, 'expired'],
    ['a ticket issued too long before its expiry', { issuedAt: NOW - 20_000 }, {}, 'expired'],
  ])('falls back on %s', (_name, over, received, reason) => {
    const { check } = setup();
    expect(check.check(seal(claims(over)), { ...call, ...received })).toMatchObject({ admitted: false, reason });
  });

  it('falls back on a ticket under another key, an unknown key id, a revoked or quarantined source, or no ticket', () => {
    const { check } = setup({ revoked: [A] });
    expect(check.check(seal(claims(), 2, randomBytes(32)), call)).toMatchObject({ admitted: false, reason: 'bad_mac' });
    expect(check.check(seal(claims(), 9, current), call)).toMatchObject({ admitted: false, reason: 'unknown_key' });
    expect(check.check(seal(claims()), call)).toMatchObject({ admitted: false, reason: 'contained' });
    expect(check.check(undefined, call)).toEqual({ admitted: false, reason: 'absent' });
    expect(check.check('', call)).toEqual({ admitted: false, reason: 'malformed' });
  });

  it('admits a ticket once; a refused one does not use up its admission', () => {
    const { check } = setup();
    const c = claims();
    expect(check.check(seal(c), { ...call, path: '/other' })).toMatchObject({ admitted: false, reason: 'mismatch' });
    expect(check.check(seal(c), call)).toMatchObject({ admitted: true });
    expect(check.check(seal(c), call)).toMatchObject({ admitted: false, reason: 'replayed' });
  });

  it('remembers ids until their tickets expire, and admits nothing more once full rather than forget one', () => {
    const replays = new ReplayCache(2);
    const { check, now } = setup({ replays });
    const [a, b, c] = [claims(), claims(), claims()];
    expect(check.check(seal(a), call)).toMatchObject({ admitted: true });
    expect(check.check(seal(b), call)).toMatchObject({ admitted: true });
    expect(check.check(seal(c), call)).toMatchObject({ admitted: false, reason: 'replay_cache_full' });
    expect(check.check(seal(a), call)).toMatchObject({ admitted: false, reason: 'replayed' });
    now.t = NOW + 1900;
    expect(check.check(seal(a), call)).toMatchObject({ admitted: false, reason: 'expired' });
    expect(replays.admit(randomUUID(), NOW + 5000, now.t)).toBe('new');
    expect(replays.size).toBe(1);
  });
});

describe('ticketHeader', () => {
  it('reads one airlock-ticket header in any case; two are never admitted', () => {
    expect(ticketHeader(['Host', 'b', 'Airlock-Ticket', 't1'])).toBe('t1');
    expect(ticketHeader(['Host', 'b'])).toBeUndefined();
    expect(ticketHeader(['airlock-ticket', 't1', 'AIRLOCK-TICKET', 't2'])).toBe('');
  });
});
