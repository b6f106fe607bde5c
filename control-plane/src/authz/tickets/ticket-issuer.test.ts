import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { createRegistry } from '@airlock/common/telemetry';
import { argumentsDigest, openTicket, ticketMacValid } from '@airlock/common/ticket';
import { AuthorizeRequest, Direction, Verdict } from '@airlock/proto/authorization/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NO_AUDIT } from '../../audit/event.ts';
import { createControlPlaneMetrics } from '../../monitoring/metrics.ts';
import { PolicyEngine } from '../../policy/engine.ts';
import { parsePolicyText } from '../../policy/load.ts';
import { SqliteStore } from '../../store/sqlite-store.ts';
import type { AgentRecord } from '../../store/store.ts';
import { Authorizer } from '../authorize.ts';
import { TicketIssuer } from './ticket-issuer.ts';
import { TicketKeys } from './ticket-keys.ts';

const TD = 'airlock.test';
const A = `spiffe://${TD}/ns/demo/sa/a`;
const B = `spiffe://${TD}/ns/demo/sa/b`;

describe('Authorizer with tickets', () => {
  let dir: string;
  let store: SqliteStore;
  let keys: TicketKeys;
  let authorizer: Authorizer;
  const now = 1_800_000_000_000;
  const agents = new Map<string, AgentRecord>([[B, { spiffeId: B, inboundAddress: '10.0.0.2:15006', updatedAt: 1 }]]);
  const policy = new PolicyEngine(
    parsePolicyText(
      `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: all }\nspec: { selector: { namespace: demo } }\n---\n` +
        `apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec: { from: { segments: [all] }, to: { segments: [all] }, rules: [ { methods: [GET, POST], paths: ["/v1/*"] } ], action: allow }\n---\n` +
        `apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: ext }\nspec: { from: { segments: [all] }, to: { hosts: [api.example.com] }, action: allow }\n`,
      'p.yaml',
    ),
    TD,
  );
  const req = (over: Partial<AuthorizeRequest>): AuthorizeRequest =>
    AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: A, destinationHost: 'b.demo', destinationPort: 8080, method: 'POST', path: '/v1/x?q=1', ...over });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-issuer-'));
    store = SqliteStore.open(dir);
    keys = await TicketKeys.open({ store, now: () => now });
    authorizer = new Authorizer({
      trustDomain: TD,
      decisions: () => ({ engine: policy, agents, revoked: new Set<string>(), quarantined: new Map() }),
      metrics: createControlPlaneMetrics(createRegistry('test')),
      audit: NO_AUDIT,
      tickets: new TicketIssuer(keys, 1500, () => now),
    });
  });
  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('binds an allowed mesh call, as asked and decided, under the destination identity key', () => {
    const res = authorizer.authorize(parseSpiffeId(A), req({ mcpMethod: 'tools/call', mcpTool: 'search' }));
    expect(res.verdict).toBe(Verdict.VERDICT_ALLOW);
    const ticket = openTicket(res.ticket);
    expect(ticket?.claims).toEqual({
      decisionId: res.decisionId,
      source: A,
      destination: B,
      instance: '10.0.0.2:15006',
      host: 'b.demo',
      port: 8080,
      method: 'POST',
      path: '/v1/x?q=1',
      mcpMethod: 'tools/call',
      mcpTool: 'search',
      mcpArgumentsDigest: '',
      policyVersion: res.policyVersion,
      issuedAt: now,
      expiresAt: now + 1500,
    });
    const [ofB] = keys.keysOf(B);
    const [ofA] = keys.keysOf(A);
    expect(ticket !== undefined && ofB !== undefined && ticketMacValid(ticket, ofB.key)).toBe(true);
    expect(ticket !== undefined && ofA !== undefined && ticketMacValid(ticket, ofA.key)).toBe(false);
  });

  it.each<[string, Partial<AuthorizeRequest>]>([
    ['a denied call', { path: '/admin' }],
    ['an external host', { destinationHost: 'api.example.com' }],
    ['an INBOUND decision', { direction: Direction.DIRECTION_INBOUND, sourceSpiffeId: B, destinationSpiffeId: A }],
    ['a body the sidecar could not read as MCP', { mcpUnreadable: 'too large' }],
    ['a tools/list filter', { mcpMethod: 'tools/list', mcpListedTools: ['search'] }],
  ])('issues none for %s', (_name, over) => {
    expect(authorizer.authorize(parseSpiffeId(A), req(over)).ticket).toBe('');
  });

  const withRules = (rules: string): Authorizer => {
    const judged = new PolicyEngine(
      parsePolicyText(
        `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: all }\nspec: { selector: { namespace: demo } }\n---\n` +
          `apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec: { from: { segments: [all] }, to: { segments: [all] }, ${rules}, action: allow }\n`,
        'p.yaml',
      ),
      TD,
    );
    return new Authorizer({
      trustDomain: TD,
      decisions: () => ({ engine: judged, agents, revoked: new Set<string>(), quarantined: new Map() }),
      metrics: createControlPlaneMetrics(createRegistry('test')),
      audit: NO_AUDIT,
      tickets: new TicketIssuer(keys, 1500, () => now),
    });
  };

  it('issues none when a policy judged on the call has header conditions, which a ticket does not bind', () => {
    const res = withRules(`rules: [ { methods: [GET, POST], paths: ["/v1/*"], headers: [ { name: x-tenant, values: [a] } ] } ]`).authorize(parseSpiffeId(A), req({ headers: [{ name: 'x-tenant', value: 'a' }] }));
    expect(res.verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(res.ticket).toBe('');
  });

  it('binds the digest of the tool arguments a rule judged; none for arguments it could not read', () => {
    const judging = withRules(`rules: [ { methods: [POST], paths: ["/v1/*"], mcp: { tools: [transfer], arguments: [ { path: amount, max: 100 } ] } } ]`);
    const res = judging.authorize(parseSpiffeId(A), req({ mcpMethod: 'tools/call', mcpTool: 'transfer', mcpArguments: '{"amount":5}' }));
    expect(res.verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(openTicket(res.ticket)?.claims.mcpArgumentsDigest).toBe(argumentsDigest('{"amount":5}'));
    // Arguments the sidecar could not read: no ticket (the ingress asks; the rule fails closed there).
    expect(judging.authorize(parseSpiffeId(A), req({ mcpMethod: 'tools/call', mcpTool: 'transfer', mcpArgumentsUnreadable: 'duplicate key' })).ticket).toBe('');
    // Other arguments, another digest: a ticket for one call admits no other.
    expect(openTicket(judging.authorize(parseSpiffeId(A), req({ mcpMethod: 'tools/call', mcpTool: 'transfer', mcpArguments: '{"amount":7}' })).ticket)?.claims.mcpArgumentsDigest).toBe(argumentsDigest('{"amount":7}'));
  });
});
