import { parseSpiffeId } from '@airlock/common/spiffe';
import { createRegistry } from '@airlock/common/telemetry';
import { AuthorizeRequest, Direction } from '@airlock/proto/authorization/v1';
import { describe, expect, it } from 'vitest';
import { NO_AUDIT } from '../audit/event.ts';
import { Authorizer } from '../authz/authorize.ts';
import { PolicyEngine } from '../policy/engine.ts';
import { parsePolicyText } from '../policy/load.ts';
import type { AgentRecord } from '../store/store.ts';
import { reasonClassOf } from '@airlock/common/reason-class';
import { DecisionCounts, MAX_LABELLED_POLICIES } from './decision-counts.ts';
import { createControlPlaneMetrics } from './metrics.ts';

const TD = 'm.test';
const id = (sa: string): string => `spiffe://${TD}/ns/demo/sa/${sa}`;
const [A, B, R] = [id('a'), id('b'), id('revoked')];

const POLICY = `apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: all }
spec: { selector: { namespace: demo } }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: no-admin }
spec: { from: { segments: [all] }, to: { segments: [all] }, rules: [ { paths: [/admin/*] } ], action: deny }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: reads }
spec: { from: { segments: [all] }, to: { segments: [all] }, rules: [ { methods: [GET, POST] } ], action: allow }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: trial }
spec: { from: { segments: [all] }, to: { hosts: [trial.example.com] }, action: deny, mode: dry-run }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: trial-allow }
spec: { from: { segments: [all] }, to: { hosts: [trial.example.com] }, action: allow }
---
apiVersion: airlock.dev/v1
kind: RateLimit
metadata: { name: once }
spec: { from: { segments: [all] }, to: { hosts: [trial.example.com] }, per: source, requests: 1, interval: 1h }
`;

describe('decision metrics', () => {
  it('count every decision by direction, verdict and a fixed reason class, and denials by policy', async () => {
    const agents = new Map<string, AgentRecord>([[B, { spiffeId: B, inboundAddress: '127.0.0.1:9', updatedAt: 1 }]]);
    const engine = new PolicyEngine(parsePolicyText(POLICY, 'p.yaml'), TD, 1);
    const registry = createRegistry('test');
    const authorizer = new Authorizer({ trustDomain: TD, decisions: () => ({ engine, agents, revoked: new Set([R]), quarantined: new Map() }), metrics: createControlPlaneMetrics(registry), audit: NO_AUDIT });
    const ask = (from: string, over: Partial<AuthorizeRequest>) =>
      authorizer.authorize(parseSpiffeId(from), AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: from, destinationHost: 'b.demo', destinationPort: 80, method: 'GET', path: '/x', ...over }));

    ask(A, {}); // policy
    ask(A, { path: '/admin/users' }); // policy_deny (no-admin)
    ask(A, { method: 'DELETE' }); // no_policy
    ask(A, { path: '/a/%2e%2e/admin' }); // ambiguous_path
    ask(R, { sourceSpiffeId: R }); // contained
    ask(A, { method: 'POST', mcpMethod: 'tools/call', mcpTool: 't', mcpHeaderMismatch: 'Mcp-Name says u' }); // header_mismatch
    ask(A, { destinationHost: 'trial.example.com' }); // dry_run (trial would deny)
    ask(A, { destinationHost: 'trial.example.com' }); // rate_limited
    authorizer.authorize(parseSpiffeId(B), AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_INBOUND, sourceSpiffeId: A, destinationSpiffeId: B, destinationHost: 'b.demo', destinationPort: 80, method: 'GET', path: '/x' }));

    const decisions = (await registry.getSingleMetric('airlock_authz_decisions_total')?.get())?.values ?? [];
    const counted = decisions.filter((v) => v.value > 0).map((v) => `${String(v.labels.direction)} ${String(v.labels.verdict)} ${String(v.labels.reason_class)} ${v.value}`).sort();
    expect(counted).toEqual([
      'inbound allow policy 1',
      'outbound allow dry_run 1',
      'outbound allow policy 1',
      'outbound deny ambiguous_path 1',
      'outbound deny contained 1',
      'outbound deny header_mismatch 1',
      'outbound deny no_policy 1',
      'outbound deny policy_deny 1',
      'outbound deny rate_limited 1',
    ]);
    const denials = (await registry.getSingleMetric('airlock_authz_policy_denials_total')?.get())?.values ?? [];
    expect(Object.fromEntries(denials.map((v) => [String(v.labels.policy), v.value]))).toEqual({ 'no-admin': 1, '(none)': 5 });
  });

  it(`labels at most ${MAX_LABELLED_POLICIES} policy names; the rest are (other)`, async () => {
    const registry = createRegistry('test');
    const counts = new DecisionCounts(createControlPlaneMetrics(registry));
    for (let i = 0; i < MAX_LABELLED_POLICIES + 50; i++) counts.count('outbound', { allow: false, dryRunDeny: false, policy: `p${i}`, reason: 'x' }, { rateLimited: false, headerMismatch: false });
    const values = (await registry.getSingleMetric('airlock_authz_policy_denials_total')?.get())?.values ?? [];
    expect(values).toHaveLength(MAX_LABELLED_POLICIES + 1);
    expect(values.find((v) => v.labels.policy === '(other)')?.value).toBe(50);
  });

  it.each([
    ['threat_feed: evil.example is listed by threat feed "x"', '', 'threat_feed'],
    ['secret_detected: aws-access-key@1 in header:x-key; policy "up" blocks it', '', 'secret'],
    ['secrets_unscannable: a blind tunnel', '', 'secret'],
    ['anomaly: new flow GET b.demo /v1/{id}', '', 'anomaly'],
    ['tool_changed: the MCP tool "search" changed since it was pinned', '', 'tool_pin'],
    ['tool_flagged: the MCP tool "add" was flagged', '', 'tool_pin'],
    // A held call denied keeps the policy that asked for approval: still an approval denial.
    ['approval_denied: alice denied this call', 'transfers', 'approval'],
    ['approval_timeout: no one approved this call within 120s', 'transfers', 'approval'],
    ['approval_required: this call needs a human approval, and none was given for this exact call at its source', '', 'approval'],
  ])('classes a denial "%s" by its stable reason prefix', (reason, policy, reasonClass) => {
    expect(reasonClassOf({ allow: false, dryRunDeny: false, policy, reason }, { rateLimited: false, headerMismatch: false })).toBe(reasonClass);
  });
});
