import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { withAuthzMetrics } from '../authz/timed-authorizer.ts';
import type { Decision } from '../authz/authorizer.ts';
import { createSidecarMetrics, requestRecorder } from './metrics.ts';

async function values(registry: Registry, name: string): Promise<{ labels: Record<string, string | number | undefined>; value: number; metricName?: string }[]> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) throw new Error(`no metric ${name}`);
  return (await metric.get()).values.map((v) => ({ labels: { ...v.labels }, value: v.value, ...('metricName' in v ? { metricName: String(v.metricName) } : {}) }));
}

describe('requestRecorder', () => {
  it('counts each outcome and observes each duration under its direction only', async () => {
    const registry = new Registry();
    const metrics = createSidecarMetrics(registry);
    const outbound = requestRecorder(metrics, 'outbound');
    const inbound = requestRecorder(metrics, 'inbound');
    for (const outcome of ['allowed', 'allowed', 'denied'] as const) outbound.finish(outbound.start(), outcome);
    inbound.finish(inbound.start(), 'unavailable');

    const counts = await values(registry, 'airlock_sidecar_requests_total');
    expect(counts).toEqual(expect.arrayContaining([
      { labels: { direction: 'outbound', outcome: 'allowed' }, value: 2 },
      { labels: { direction: 'outbound', outcome: 'denied' }, value: 1 },
      { labels: { direction: 'inbound', outcome: 'unavailable' }, value: 1 },
    ]));
    expect(counts).toHaveLength(3);
    const histogram = await values(registry, 'airlock_sidecar_request_duration_seconds');
    const count = (direction: string): number | undefined => histogram.find((v) => v.metricName === 'airlock_sidecar_request_duration_seconds_count' && v.labels.direction === direction)?.value;
    expect(count('outbound')).toBe(3);
    expect(count('inbound')).toBe(1);
  });
});

describe('withAuthzMetrics', () => {
  it('observes decisions and failures alike, under the request direction, and passes both through', async () => {
    const registry = new Registry();
    const metrics = createSidecarMetrics(registry);
    // Passed through untouched: its fields do not matter here.
    const allowed = { allowed: true, decisionId: 'd' } as Decision;
    const failure = new AirlockError(ErrorCode.AuthzUnavailable, 'down');
    let fail = false;
    const timed = withAuthzMetrics({ authorize: () => (fail ? Promise.reject(failure) : Promise.resolve(allowed)), close: () => undefined }, metrics.authzDuration);
    const request = { direction: 'inbound' as const, sourceId: 'spiffe://t/ns/a/sa/b', destinationId: 'spiffe://t/ns/a/sa/c', host: 'c.a', port: 80, method: 'GET', path: '/' };
    await expect(timed.authorize(request)).resolves.toBe(allowed);
    fail = true;
    await expect(timed.authorize(request)).rejects.toBe(failure);
    await expect(timed.authorize({ ...request, direction: 'outbound' })).rejects.toBe(failure);
    const histogram = await values(registry, 'airlock_sidecar_authz_duration_seconds');
    const count = (direction: string): number | undefined => histogram.find((v) => v.metricName === 'airlock_sidecar_authz_duration_seconds_count' && v.labels.direction === direction)?.value;
    expect(count('inbound')).toBe(2);
    expect(count('outbound')).toBe(1);
  });
});
