import { AuthorizeRequest, Direction, Verdict, type AuthorizeCheck, type AuthorizeResult, type AuthorizeStreamResponse } from '@airlock/proto/authorization/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminFetch, openAuthorizeStream, RESEARCHER, startTestControlPlane, type TestControlPlane } from '../../testing/test-control-plane.ts';

const POLICY = `
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: researchers }
spec: { selector: { namespace: demo, serviceAccounts: [researcher] } }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: researchers-to-mcp }
spec:
  from: { segments: [researchers] }
  to: { hosts: [mcp.example.com], ports: [443] }
  rules:
    - { mcp: { methods: [tools/call], tools: [transfer] }, approve: required }
    - { mcp: { methods: ['*'] } }
  action: allow
`;

const check = (id: number, r: Partial<AuthorizeRequest>): AuthorizeCheck => ({
  id,
  request: AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: RESEARCHER, destinationHost: 'mcp.example.com', destinationPort: 443, method: 'POST', path: '/mcp', mcpMethod: 'tools/call', mcpTool: 'transfer', mcpArguments: '{"amount":5}', ...r }),
});

describe('AuthorizeStream with a held call', () => {
  let t: TestControlPlane;
  beforeAll(async () => {
    t = await startTestControlPlane(POLICY, 'airlock-stream-approval-');
  });
  afterAll(() => t.close());

  it('answers the held call wait when it is approved, without holding up the checks sent with it or after it', async () => {
    const s = openAuthorizeStream(t.cp, t.svid(RESEARCHER));
    try {
      const [held] = await s.send([check(1, {})]);
      expect(held?.decision).toMatchObject({ verdict: Verdict.VERDICT_APPROVAL_PENDING, policy: 'researchers-to-mcp' });
      const approvalId = held?.decision?.approvalId ?? '';
      expect(held?.decision?.approvalWaitMs).toBeGreaterThan(100_000);
      // The wait and a plain check in one message: the plain one is answered at once, alone.
      const later: AuthorizeResult[] = [];
      const released = new Promise<void>((resolve) =>
        s.stream.on('data', (m: AuthorizeStreamResponse) => {
          if (m.results.some((r) => r.id === 2)) {
            later.push(...m.results);
            resolve();
          }
        }),
      );
      const now = await s.send([check(2, { approvalId }), check(3, { mcpTool: 'balance', mcpArguments: '{}' })]);
      expect(now.map((r) => [r.id, r.decision?.verdict])).toEqual([[3, Verdict.VERDICT_ALLOW]]);
      expect((await s.send([check(4, { mcpTool: 'balance', mcpArguments: '{}' })]))[0]?.decision?.verdict).toBe(Verdict.VERDICT_ALLOW);
      expect(later).toEqual([]);
      const res = await adminFetch(t.cp, '/v1/approvals/approve', { method: 'POST', headers: { authorization: `Bearer ${t.cp.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ id: approvalId }) });
      expect(res.status).toBe(200);
      await released;
      expect(later.map((r) => [r.id, r.decision?.verdict, r.decision?.approvalOutcome])).toEqual([[2, Verdict.VERDICT_ALLOW, '']]);
    } finally {
      s.close();
    }
  });
});
