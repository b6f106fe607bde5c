import { parseSpiffeId } from '@airlock/common/spiffe';
import { createRegistry } from '@airlock/common/telemetry';
import { AuthorizeRequest, Direction, TlsMode, Verdict } from '@airlock/proto/authorization/v1';
import { describe, expect, it } from 'vitest';
import { NO_AUDIT, type DecisionRecord } from '../audit/event.ts';
import { createControlPlaneMetrics } from '../monitoring/metrics.ts';
import { PolicyEngine, toHost } from '../policy/engine.ts';
import { parsePolicyText } from '../policy/load.ts';
import type { AgentRecord } from '../store/store.ts';
import { Authorizer } from './authorize.ts';
import { decide } from './decide.ts';

const TD = 'airlock.test';
const A = `spiffe://${TD}/ns/demo/sa/a`;
const B = `spiffe://${TD}/ns/demo/sa/b`;

const POLICY = `apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: all }
spec: { selector: { namespace: demo } }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: llm }
spec:
  from: { segments: [all] }
  to: { hosts: [api.example.com], ports: [443], tls: inspect }
  rules: [ { methods: [GET], paths: [/v1/*] } ]
  action: allow
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: mesh }
spec: { from: { segments: [all] }, to: { segments: [all] }, action: allow }
`;

describe('Authorize: tls: inspect on the wire and in the audit', () => {
  const agents = new Map<string, AgentRecord>([[B, { spiffeId: B, inboundAddress: '127.0.0.1:9', updatedAt: 1 }]]);
  const engine = new PolicyEngine(parsePolicyText(POLICY, 'p.yaml'), TD, 1);
  const revoked = new Set<string>();
  const lines: DecisionRecord[] = [];
  const authorizer = new Authorizer({
    trustDomain: TD,
    decisions: () => ({ engine, agents, revoked, quarantined: new Map() }),
    metrics: createControlPlaneMetrics(createRegistry('test')),
    audit: { ...NO_AUDIT, decision: (r) => void lines.push(r) },
  });
  const ask = (over: Partial<AuthorizeRequest>) =>
    authorizer.authorize(parseSpiffeId(A), AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: A, destinationHost: 'api.example.com', destinationPort: 443, ...over }));

  it('answers an allowed CONNECT with TLS_MODE_INSPECT, and judges the requests read inside', () => {
    expect(ask({ method: 'CONNECT', path: '' })).toMatchObject({ verdict: Verdict.VERDICT_ALLOW, policy: 'llm', tls: TlsMode.TLS_MODE_INSPECT });
    expect(ask({ method: 'GET', path: '/v1/models', inspected: true })).toMatchObject({ verdict: Verdict.VERDICT_ALLOW, tls: TlsMode.TLS_MODE_INSPECT });
    expect(ask({ method: 'POST', path: '/v1/models', inspected: true })).toMatchObject({ verdict: Verdict.VERDICT_DENY, tls: TlsMode.TLS_MODE_UNSPECIFIED });
    expect(lines.slice(-3).map((l) => [l.method, l.verdict, l.tls, l.inspected])).toEqual([
      ['CONNECT', 'allow', 'inspect', undefined],
      ['GET', 'allow', 'inspect', true],
      ['POST', 'deny', undefined, true],
    ]);
  });

  it('never names a mode for a mesh call, nor for a contained identity', () => {
    expect(ask({ destinationHost: 'b.demo', destinationPort: 80, method: 'GET', path: '/' })).toMatchObject({ verdict: Verdict.VERDICT_ALLOW, tls: TlsMode.TLS_MODE_UNSPECIFIED });
    revoked.add(A);
    try {
      expect(ask({ method: 'CONNECT', path: '' })).toMatchObject({ verdict: Verdict.VERDICT_DENY, reason: 'identity revoked', tls: TlsMode.TLS_MODE_UNSPECIFIED });
      // explain (the admin API's JSON) names no mode for it either.
      expect(decide({ engine, agents, revoked, quarantined: new Map() }, { source: parseSpiffeId(A), destination: toHost('api.example.com'), port: 443, method: 'CONNECT', path: '' }).decision.tls).toBeUndefined();
    } finally {
      revoked.delete(A);
    }
  });
});
