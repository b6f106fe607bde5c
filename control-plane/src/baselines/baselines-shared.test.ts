// Two replicas on one real etcd: what one learns, accepts or resets reaches the other through the
// store's watch (README "Behaviour baselines": replicas).
import { randomUUID } from 'node:crypto';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { createRootLogger } from '@airlock/common/logging';
import { createRegistry } from '@airlock/common/telemetry';
import { AuthorizeRequest, Direction, Verdict } from '@airlock/proto/authorization/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEtcd, type EtcdCluster } from '../../../test/support/etcd.ts';
import { NO_AUDIT } from '../audit/event.ts';
import { Authorizer } from '../authz/authorize.ts';
import { createControlPlaneMetrics } from '../monitoring/metrics.ts';
import { PolicyEngine } from '../policy/engine.ts';
import { parsePolicyText } from '../policy/load.ts';
import { EtcdStore } from '../store/etcd-store.ts';
import { watchStore, type Followers } from '../store/follow-store.ts';
import type { AgentRecord } from '../store/store.ts';
import { baselinePolicyYaml } from '../testing/baseline-policy.ts';
import { Baselines } from './baselines.ts';

const TD = 'shared.test';
const A = `spiffe://${TD}/ns/demo/sa/a`;
const B = `spiffe://${TD}/ns/demo/sa/b`;
const YAML = baselinePolicyYaml('{ from: { segments: [agents] }, learn: 1s, response: deny }');

describe('baselines shared by replicas through etcd', () => {
  let etcd: EtcdCluster;
  const closers: (() => Promise<void>)[] = [];
  beforeAll(async () => {
    etcd = await startEtcd(1);
  }, 60_000);
  afterAll(async () => {
    for (const c of closers.reverse()) await c();
    await etcd.stop();
  });

  /** One replica: its own store client, watch, Baselines and Authorizer. */
  async function replica(prefix: string) {
    const store = await EtcdStore.open({ endpoints: etcd.endpoints, prefix });
    const registry = createRegistry('test');
    const logger = createRootLogger({ process: 'test', level: 'silent' });
    const follower = await watchStore(store, logger, registry);
    const baselines = await Baselines.load({ store, audit: NO_AUDIT, registry, logger, isQuarantined: () => false, contain: () => Promise.resolve(), flushMs: 3_600_000 });
    // Only the baselines follow here: the other holders are not part of this test.
    follower.start({ baselines } as unknown as Followers);
    closers.push(async () => {
      await baselines.close();
      await follower.close();
      await store.close();
    });
    const engine = new PolicyEngine(parsePolicyText(YAML, 'p.yaml'), TD, 1);
    const agents = new Map<string, AgentRecord>([[B, { spiffeId: B, inboundAddress: '127.0.0.1:9', updatedAt: 1 }]]);
    const authorizer = new Authorizer({ trustDomain: TD, decisions: () => ({ engine, agents, revoked: new Set(), quarantined: new Map() }), metrics: createControlPlaneMetrics(registry), audit: NO_AUDIT, baselines });
    const call = (path: string) => authorizer.authorize(parseSpiffeId(A), AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: A, destinationHost: 'b.demo', destinationPort: 80, method: 'GET', path }));
    return { baselines, call };
  }

  /** Polls (bounded) until `check` holds. */
  async function until(check: () => boolean): Promise<boolean> {
    for (let i = 0; i < 100; i++) {
      if (check()) return true;
      await new Promise((r) => setTimeout(r, 20));
    }
    return check();
  }

  it("a flow one replica learned, one an operator accepted there, and a reset there are followed by the other", async () => {
    const prefix = `/airlock-${randomUUID()}/`;
    const one = await replica(prefix);
    const two = await replica(prefix);
    expect(one.call('/v1/learned/1').verdict).toBe(Verdict.VERDICT_ALLOW);
    await one.baselines.flush();
    expect(await until(() => two.baselines.get(A)?.flows.some((f) => f.flow === `${B} GET /v1/learned/{id}`) === true)).toBe(true);
    // Learning began at the first call on either replica: wait it out (bounded), then the other replica judges.
    const started = two.baselines.get(A)?.startedAt ?? 0;
    await new Promise((r) => setTimeout(r, Math.max(0, started + 1_100 - Date.now())));
    expect(two.call('/v1/learned/2').verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(two.call('/v1/other').verdict).toBe(Verdict.VERDICT_DENY);
    // Accepted on the replica that flagged it: normal on the other too.
    expect(await two.baselines.accept(A, `${B} GET /v1/other`, 'alice')).toBe(true);
    expect(await until(() => one.baselines.get(A)?.flows.find((f) => f.flow === `${B} GET /v1/other`)?.normal === true)).toBe(true);
    expect(one.call('/v1/other').verdict).toBe(Verdict.VERDICT_ALLOW);
    // Reset on one: forgotten on both.
    await one.baselines.reset(A);
    expect(await until(() => two.baselines.get(A) === undefined)).toBe(true);
  });
});
