import { createServer } from 'node:net';
import { createRootLogger } from '@airlock/common/logging';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlPlanePool } from '../controlplane/control-plane-pool.ts';
import { ControlPlaneEndpoints } from '../controlplane/endpoints.ts';
import { createTestCa } from '../testing/certs.ts';
import { controlPlaneIdOf, startFakeControlPlane, type FakeControlPlane } from '../testing/fake-control-plane.ts';
import { quietLogger, StaticSvidSource, svidFor, testMetrics } from '../testing/fakes.ts';
import { MAX_REOPEN_DELAY_MS, TrustBundleWatcher } from './trust-bundle-watcher.ts';

const TD = 'airlock.test';
const logger = quietLogger();

describe('TrustBundleWatcher over several control-plane endpoints', () => {
  const ca = createTestCa();
  const identity = new StaticSvidSource(svidFor(ca, `spiffe://${TD}/ns/demo/sa/alice`));
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function replica(revokedSerial: string): Promise<FakeControlPlane> {
    const cp = await startFakeControlPlane({ ca, servingId: controlPlaneIdOf(TD), requireClientCert: true });
    cp.trustBundlePush = { ...cp.trustBundlePush, revokedCertificates: [{ issuer: '', serial: revokedSerial }] };
    cleanups.push(() => cp.stop());
    return cp;
  }

  it('moves the stream to another endpoint when the one it is on dies, and counts the failover', async () => {
    const [first, second] = [await replica('0a'), await replica('0b')];
    const endpoints = new ControlPlaneEndpoints({ configured: [first.port, second.port].map((port) => ({ host: '127.0.0.1', port })), refreshMs: 60_000, logger });
    const offset = endpoints.current().indexOf(`127.0.0.1:${first.port}`);
    const { metrics } = testMetrics();
    const pool = new ControlPlanePool({ endpoints, logger, random: () => (offset + 0.5) / 0x7fffffff, metrics: { endpointUp: metrics.controlPlaneEndpointUp, failovers: metrics.controlPlaneFailovers } });
    const watcher = new TrustBundleWatcher({ pool, controlPlaneId: controlPlaneIdOf(TD), identity, logger, backoff: { initialMs: 20, maxMs: 100 } });
    cleanups.push(() => watcher.close());
    watcher.start();
    await expect.poll(() => watcher.has('', '0a')).toBe(true);
    expect(second.trustBundleWatches).toBe(0);

    await first.stop();
    await expect.poll(() => watcher.has('', '0b'), { timeout: 5000 }).toBe(true);
    expect(watcher.has('', '0a')).toBe(false); // the list is the new endpoint's, whole
    expect((await metrics.controlPlaneFailovers.get()).values.map((v) => [v.labels.client, v.value])).toEqual([['trust_bundle', 1]]);
  });

  it('reopens a broken stream with a backoff of at most MAX_REOPEN_DELAY_MS, as fast as authorization comes back', async () => {
    const server = createServer();
    await listen(server, { host: '127.0.0.1', port: 0 });
    const port = boundPort(server);
    await closeServer(server); // nothing listens there: every attempt fails at once
    const retries: number[] = [];
    const capture = createRootLogger({ process: 'test', level: 'warn', destination: { write: (line: string) => void retries.push(Number((JSON.parse(line) as { retryInMs?: number }).retryInMs)) } });
    const endpoints = new ControlPlaneEndpoints({ configured: [{ host: '127.0.0.1', port }], refreshMs: 60_000, logger });
    const { metrics } = testMetrics();
    const pool = new ControlPlanePool({ endpoints, logger, metrics: { endpointUp: metrics.controlPlaneEndpointUp, failovers: metrics.controlPlaneFailovers } });
    const watcher = new TrustBundleWatcher({ pool, controlPlaneId: controlPlaneIdOf(TD), identity, logger: capture });
    cleanups.push(() => watcher.close());
    watcher.start();
    await expect.poll(() => retries.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(6);
    expect(retries.slice(0, 6)).toEqual([200, 400, 800, MAX_REOPEN_DELAY_MS, MAX_REOPEN_DELAY_MS, MAX_REOPEN_DELAY_MS]);
  });
});
