import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { ControlPlanePool } from '../controlplane/control-plane-pool.ts';
import { ControlPlaneEndpoints } from '../controlplane/endpoints.ts';
import { quietLogger } from '../testing/fakes.ts';
import { withApprovals } from './approval-wait.ts';
import type { Authorizer, AuthzRequest, Decision } from './authorizer.ts';
import { FailoverAuthorizer } from './failover-authorizer.ts';
import { noAnswer } from './proto-mapping.ts';
import { withAuthzMetrics } from './timed-authorizer.ts';

const AGENT = 'spiffe://airlock.test/ns/demo/sa/alice';
const A = '127.0.0.1:1';
const B = '127.0.0.1:2';
const req: AuthzRequest = { direction: 'outbound', sourceId: AGENT, host: 'bob.demo', port: 80, method: 'POST', path: '/mcp', mcp: { method: 'tools/call', tool: 'transfer', arguments: { json: '{}' } } };
const pending = (id: string, waitMs: number): Decision => ({ allowed: false, decisionId: 'd0', reason: 'held', policy: 'p', policyVersion: 1, rule: 'rules[0]', approval: { id, waitMs } });
const allow: Decision = { allowed: true, decisionId: 'd1', reason: 'ok', policy: 'p', policyVersion: 1, rule: 'rules[0]', upstream: undefined, dryRunDeny: false, allowedTools: [] };

interface Asked {
  readonly address: string;
  readonly request: AuthzRequest;
  readonly timeoutMs: number | undefined;
}

/** Two control-plane endpoints behind the failover, each answering as `answer` says. */
function replicas(answer: (address: string, request: AuthzRequest) => Promise<Decision>) {
  const logger = quietLogger();
  const endpoints = new ControlPlaneEndpoints({ configured: [A, B].map((a) => ({ host: '127.0.0.1', port: Number(a.split(':')[1]) })), refreshMs: 60_000, logger });
  const pool = new ControlPlanePool({ endpoints, logger, random: () => 0 });
  const asked: Asked[] = [];
  const authorizerFor = (address: string): Authorizer => ({
    authorize: (request, timeoutMs) => {
      asked.push({ address, request, timeoutMs });
      return answer(address, request);
    },
    close: () => undefined,
  });
  return { authorizer: withApprovals(new FailoverAuthorizer({ endpoints, pool, authorizerFor, timeoutMs: 200 }), 200), asked, pool };
}

describe('withApprovals: a held call waits at the replica holding its approval', () => {
  it('asks again with the approval id, at the same endpoint, once, on the approval wait plus the decision timeout', async () => {
    const { authorizer, asked, pool } = replicas((address, request) => {
      if (request.approvalId === undefined) {
        // The pool's order changes between the two asks (B answered something else meanwhile).
        pool.noAnswer(A);
        return Promise.resolve(pending('ap-1', 5000));
      }
      return Promise.resolve(address === A ? allow : { ...allow, allowed: false, reason: 'approval_unknown' });
    });
    expect(await authorizer.authorize(req)).toMatchObject({ allowed: true, decisionId: 'd1' });
    expect(asked.map((a) => [a.address, a.request.approvalId, a.timeoutMs])).toEqual([[A, undefined, 100], [A, 'ap-1', 5200]]);
  });

  it('fails closed: no answer to the wait is no decision (never another replica), a second pending is a deny, and a huge wait is not believed', async () => {
    const silent = replicas((_, request) => (request.approvalId === undefined ? Promise.resolve(pending('ap-2', 1000)) : Promise.reject(noAnswer('stream broke'))));
    await expect(silent.authorizer.authorize(req)).rejects.toThrow(/stream broke/);
    expect(silent.asked.map((a) => a.address)).toEqual([A, A]);

    const again = replicas(() => Promise.resolve(pending('ap-3', 2 ** 31)));
    const d = await again.authorizer.authorize(req);
    expect(d).toMatchObject({ allowed: false });
    expect('approval' in d).toBe(false);
    expect(again.asked.map((a) => a.timeoutMs)).toEqual([100, 10 * 60_000 + 200]);
  });

  it('leaves the human wait out of the decision latency histogram', async () => {
    const duration = new Histogram({ name: 'authz_seconds', help: 'h', labelNames: ['direction'] as const, registers: [new Registry()] });
    const inner: Authorizer = { authorize: (r) => Promise.resolve(r.approvalId === undefined ? pending('ap-4', 1000) : allow), close: () => undefined };
    expect(await withApprovals(withAuthzMetrics(inner, duration), 200).authorize(req)).toMatchObject({ allowed: true });
    const count = (await duration.get()).values.find((v) => v.metricName === 'authz_seconds_count' && v.labels.direction === 'outbound');
    expect(count?.value).toBe(1);
  });
});
