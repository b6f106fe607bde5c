import { afterEach, describe, expect, it } from 'vitest';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { Verdict, type AuthorizeResponse } from '@airlock/proto/authorization/v1';
import { ControlPlanePool } from '../controlplane/control-plane-pool.ts';
import { ControlPlaneEndpoints } from '../controlplane/endpoints.ts';
import { createTestCa } from '../testing/certs.ts';
import { controlPlaneIdOf, startFakeControlPlane, type FakeControlPlane } from '../testing/fake-control-plane.ts';
import { quietLogger, StaticSvidSource, svidFor } from '../testing/fakes.ts';
import type { Authorizer, AuthzRequest, Decision } from './authorizer.ts';
import { createAuthorizer } from './create-authorizer.ts';
import { FailoverAuthorizer } from './failover-authorizer.ts';
import { noAnswer, unavailable } from './proto-mapping.ts';

const TD = 'airlock.test';
const AGENT = `spiffe://${TD}/ns/demo/sa/alice`;
const A = '127.0.0.1:1';
const B = '127.0.0.1:2';
const logger = quietLogger();
const req = (path: string): AuthzRequest => ({ direction: 'outbound', sourceId: AGENT, host: 'bob.demo', port: 80, method: 'GET', path });
const allow = (decisionId: string): Decision => ({ allowed: true, decisionId, reason: 'ok', policy: 'p', policyVersion: 1, rule: 'r', upstream: undefined, dryRunDeny: false, allowedTools: [] });
const deny = (decisionId: string): Decision => ({ allowed: false, decisionId, reason: 'no', policy: 'p', policyVersion: 1, rule: '' });

/** What one endpoint's authorizer does with each call, and the timeout each call was given. */
type Behaviour = (request: AuthzRequest, timeoutMs: number | undefined) => Promise<Decision>;
interface Call {
  readonly address: string;
  readonly timeoutMs: number | undefined;
}

function pooled(addresses: readonly string[], behaviours: Record<string, Behaviour>, timeoutMs = 200) {
  const endpoints = new ControlPlaneEndpoints({ configured: addresses.map((a) => ({ host: '127.0.0.1', port: Number(a.split(':')[1]) })), refreshMs: 60_000, logger });
  const pool = new ControlPlanePool({ endpoints, logger, random: () => 0 });
  const calls: Call[] = [];
  const authorizerFor = (address: string): Authorizer => ({
    authorize: (request, t) => {
      calls.push({ address, timeoutMs: t });
      return (behaviours[address] ?? (() => Promise.reject(noAnswer('no such endpoint'))))(request, t);
    },
    close: () => undefined,
  });
  return { authorizer: new FailoverAuthorizer({ endpoints, pool, authorizerFor, timeoutMs }), calls, pool };
}

const code = (p: Promise<unknown>): Promise<unknown> => p.then(() => 'resolved', (e: unknown) => (e instanceof AirlockError ? e.code : e));

describe('FailoverAuthorizer', () => {
  it('asks another endpoint once when the first gave no answer, within the same decision timeout', async () => {
    // A stays silent until its deadline, as a frozen replica does.
    const silentUntilDeadline: Behaviour = (_, t) => new Promise((_resolve, reject) => setTimeout(() => reject(noAnswer(`no decision within ${t} ms`)), t));
    const { authorizer, calls, pool } = pooled([A, B], { [A]: silentUntilDeadline, [B]: () => Promise.resolve(allow('from-b')) }, 200);
    expect(await authorizer.authorize(req('/x'))).toMatchObject({ allowed: true, decisionId: 'from-b' });
    expect(calls.map((c) => c.address)).toEqual([A, B]);
    // The first attempt leaves time for a second; the second gets what is left of authzTimeout.
    const [first, second] = calls.map((c) => c.timeoutMs ?? Infinity) as [number, number];
    expect(first).toBe(100);
    expect(second).toBeGreaterThan(0);
    expect(second).toBeLessThanOrEqual(200 - first);
    // The silent endpoint is now tried last.
    expect(pool.candidates()[0]).toBe(B);
  });

  it('a dead endpoint (fails at once) leaves the retry nearly the whole decision timeout', async () => {
    const { authorizer, calls } = pooled([A, B], { [A]: () => Promise.reject(noAnswer('the control plane is unreachable')), [B]: () => Promise.resolve(deny('from-b')) }, 200);
    expect(await authorizer.authorize(req('/x'))).toMatchObject({ allowed: false, decisionId: 'from-b' });
    expect(calls.map((c) => c.address)).toEqual([A, B]);
    expect(calls[1]?.timeoutMs).toBeGreaterThan(100);
    expect(calls[1]?.timeoutMs).toBeLessThanOrEqual(200);
  });

  it('never asks another endpoint for a check that was answered: allow, deny or a refusal', async () => {
    for (const [answer, expected] of [
      [() => Promise.resolve(allow('a')), 'resolved'],
      [() => Promise.resolve(deny('a')), 'resolved'],
      [() => Promise.reject(unavailable('the control plane refused the check (gRPC code 7): not yours')), ErrorCode.AuthzUnavailable],
    ] as const) {
      const { authorizer, calls } = pooled([A, B], { [A]: answer, [B]: () => Promise.resolve(allow('b')) });
      expect(await code(authorizer.authorize(req('/x')))).toBe(expected);
      expect(calls.map((c) => c.address)).toEqual([A]);
    }
  });

  it('fails closed when neither endpoint answers, after one retry (not one per endpoint)', async () => {
    const silent: Behaviour = () => Promise.reject(noAnswer('no decision'));
    const { authorizer, calls } = pooled([A, B, '127.0.0.1:3'], { [A]: silent, [B]: silent, '127.0.0.1:3': silent });
    expect(await code(authorizer.authorize(req('/x')))).toBe(ErrorCode.AuthzUnavailable);
    expect(calls).toHaveLength(2);
  });

  it('with one endpoint, gives it the whole decision timeout and does not retry', async () => {
    const { authorizer, calls } = pooled([A], { [A]: () => Promise.reject(noAnswer('no decision')) }, 250);
    expect(await code(authorizer.authorize(req('/x')))).toBe(ErrorCode.AuthzUnavailable);
    expect(calls).toEqual([{ address: A, timeoutMs: 250 }]);
  });

  it('a check pending on an endpoint that leaves the list is asked of another; none is retried once closed', async () => {
    let ips = ['127.0.0.5', '127.0.0.6'];
    const endpoints = new ControlPlaneEndpoints({ configured: [{ host: 'cp.test', port: 9 }], refreshMs: 60_000, logger, resolve: () => Promise.resolve(ips) });
    await endpoints.refresh();
    const pool = new ControlPlanePool({ endpoints, logger, random: () => 0 });
    const asked: string[] = [];
    const pending = new Set<() => void>();
    let sixAnswers = true;
    const authorizerFor = (address: string): Authorizer => {
      const mine = new Set<() => void>();
      return {
        authorize: (request) => {
          asked.push(address);
          if (address === '127.0.0.6:9' && sixAnswers) return Promise.resolve(allow(request.path));
          // Waits for an answer that never comes; closing it fails the check as closed streams do.
          return new Promise((_resolve, reject) => {
            const fail = (): void => reject(noAnswer('the stream to this control-plane endpoint was closed'));
            mine.add(fail);
            pending.add(fail);
          });
        },
        close: () => {
          for (const f of mine) f();
        },
      };
    };
    const authorizer = new FailoverAuthorizer({ endpoints, pool, authorizerFor, timeoutMs: 60_000 });
    const decision = authorizer.authorize(req('/moved'));
    await expect.poll(() => pending.size).toBe(1);
    ips = ['127.0.0.6'];
    await endpoints.refresh();
    expect((await decision).decisionId).toBe('/moved');
    expect(asked).toEqual(['127.0.0.5:9', '127.0.0.6:9']);

    // Shutting down: a check failed by the close is not asked elsewhere.
    ips = ['127.0.0.5', '127.0.0.6'];
    await endpoints.refresh();
    sixAnswers = false;
    asked.length = 0;
    const last = code(authorizer.authorize(req('/last')));
    await expect.poll(() => asked.length).toBe(1);
    authorizer.close();
    expect(await last).toBe(ErrorCode.AuthzUnavailable);
    expect(asked).toHaveLength(1);
  });

  it('spreads checks over two healthy endpoints', async () => {
    const { authorizer, calls } = pooled([A, B], { [A]: () => Promise.resolve(allow('a')), [B]: () => Promise.resolve(allow('b')) });
    await Promise.all(Array.from({ length: 10 }, (_, i) => authorizer.authorize(req(`/${i}`))));
    expect(calls.filter((c) => c.address === A)).toHaveLength(5);
    expect(calls.filter((c) => c.address === B)).toHaveLength(5);
  });
});

describe('FailoverAuthorizer over real gRPC streams', () => {
  const ca = createTestCa();
  const identity = new StaticSvidSource(svidFor(ca, AGENT));
  const started: FakeControlPlane[] = [];
  const closing: { close(): void }[] = [];
  afterEach(async () => {
    for (const c of closing.splice(0)) c.close();
    for (const cp of started.splice(0)) await cp.stop();
  });

  const answering = (decisionId: string) => (): AuthorizeResponse => ({ verdict: Verdict.VERDICT_ALLOW, decisionId, reason: 'ok', policy: 'p', upstream: undefined, dryRunDeny: false, policyVersion: 0, rule: '', mcpAllowedTools: [], tls: 0, ticket: '', approvalId: '', approvalWaitMs: 0, approvalOutcome: '', rateLimited: false, retryAfterMs: 0, addressesRequired: false, mcpBodyRequired: false });

  async function replicas(n: number): Promise<FakeControlPlane[]> {
    for (let i = 0; i < n; i++) started.push(await startFakeControlPlane({ ca, servingId: controlPlaneIdOf(TD), requireClientCert: true }));
    return started;
  }

  function sidecarAuthorizer(ports: readonly number[], timeoutMs: number): Authorizer {
    const endpoints = new ControlPlaneEndpoints({ configured: ports.map((port) => ({ host: '127.0.0.1', port })), refreshMs: 60_000, logger });
    const pool = new ControlPlanePool({ endpoints, logger, random: () => 0 });
    const authorizer = createAuthorizer('stream', { endpoints, pool, controlPlaneId: controlPlaneIdOf(TD), identity, timeoutMs });
    closing.push(authorizer);
    return authorizer;
  }

  it('a replica that hangs: every check is answered by the other within the decision timeout', async () => {
    const [frozen, live] = (await replicas(2)) as [FakeControlPlane, FakeControlPlane];
    frozen.authorize = () => 'hang';
    live.authorize = answering('live');
    // A generous timeout: only a check that got no answer at all can fail.
    const authorizer = sidecarAuthorizer([frozen.port, live.port], 2000);
    const decisions = await Promise.all(Array.from({ length: 8 }, (_, i) => authorizer.authorize(req(`/${i}`))));
    expect(decisions.map((d) => d.decisionId)).toEqual(Array(8).fill('live'));
    expect(frozen.authorizeRequests.length).toBeGreaterThan(0); // some went there first, and were retried
  });

  it('a replica that is gone: checks go to the other; with both gone, 503 (fail closed)', async () => {
    const [gone, live] = (await replicas(2)) as [FakeControlPlane, FakeControlPlane];
    live.authorize = answering('live');
    gone.authorize = answering('gone');
    const authorizer = sidecarAuthorizer([gone.port, live.port], 2000);
    await Promise.all([authorizer.authorize(req('/warm-1')), authorizer.authorize(req('/warm-2'))]);
    await gone.stop();
    const decisions = await Promise.all(Array.from({ length: 6 }, (_, i) => authorizer.authorize(req(`/${i}`))));
    expect(decisions.map((d) => d.decisionId)).toEqual(Array(6).fill('live'));
    await live.stop();
    expect(await code(authorizer.authorize(req('/none')))).toBe(ErrorCode.AuthzUnavailable);
  });
});
