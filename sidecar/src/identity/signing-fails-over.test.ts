import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { ControlPlanePool } from '../controlplane/control-plane-pool.ts';
import { ControlPlaneEndpoints } from '../controlplane/endpoints.ts';
import { createTestCa } from '../testing/certs.ts';
import { controlPlaneIdOf, startFakeControlPlane, type FakeControlPlane } from '../testing/fake-control-plane.ts';
import { quietLogger, testMetrics } from '../testing/fakes.ts';
import { JoinTokenSigner } from './certificate-signer.ts';
import { newKeyAndCsr } from './key-and-csr.ts';

const TD = 'airlock.test';
const ALICE = `spiffe://${TD}/ns/demo/sa/alice`;
const logger = quietLogger();

/** A loopback port nothing listens on: connections to it are refused at once, as to a killed replica. */
async function deadPort(): Promise<number> {
  const s = createServer();
  await listen(s, { host: '127.0.0.1', port: 0 });
  const port = boundPort(s);
  await closeServer(s);
  return port;
}

describe('certificate signing over several control-plane endpoints', () => {
  const ca = createTestCa();
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function replica(): Promise<FakeControlPlane> {
    const cp = await startFakeControlPlane({ ca, servingId: controlPlaneIdOf(TD) });
    cleanups.push(() => cp.stop());
    return cp;
  }

  /** A signer over both ports that tries `first` first. */
  function signer(first: number, second: number) {
    const endpoints = new ControlPlaneEndpoints({ configured: [first, second].map((port) => ({ host: '127.0.0.1', port })), refreshMs: 60_000, logger });
    const offset = endpoints.current().indexOf(`127.0.0.1:${first}`);
    const { metrics } = testMetrics();
    const pool = new ControlPlanePool({ endpoints, logger, random: () => (offset + 0.5) / 0x7fffffff, metrics: { endpointUp: metrics.controlPlaneEndpointUp, failovers: metrics.controlPlaneFailovers } });
    const s = new JoinTokenSigner({ endpoints, pool, caPem: ca.certPem, controlPlaneId: controlPlaneIdOf(TD), joinToken: 'tok-1' });
    cleanups.push(() => s.close());
    return { signer: s, pool, failovers: async () => (await metrics.controlPlaneFailovers.get()).values.map((v) => [v.labels.client, v.value]) };
  }

  const sign = async (s: JoinTokenSigner) => s.sign({ csrPem: (await newKeyAndCsr()).csrPem, inboundAddress: '127.0.0.1:15006' });

  it('signs through the next endpoint when the first is unreachable', async () => {
    const live = await replica();
    live.tokens.set('tok-1', ALICE);
    const dead = await deadPort();
    const { signer: s, pool, failovers } = signer(dead, live.port);
    expect((await sign(s)).spiffeId).toBe(ALICE);
    expect(await failovers()).toEqual([['sign', 1]]);
    expect(live.signRequests).toHaveLength(1);
    // The unreachable one is now tried last.
    expect(pool.candidates().at(-1)).toBe(`127.0.0.1:${dead}`);
  });

  it('does not take a refusal to another endpoint: the control plane answered', async () => {
    const [first, second] = [await replica(), await replica()];
    second.tokens.set('tok-1', ALICE); // the first does not know the token: UNAUTHENTICATED
    const err = await sign(signer(first.port, second.port).signer).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AirlockError);
    expect((err as AirlockError).code).toBe(ErrorCode.Attestation);
    expect(first.signRequests).toHaveLength(1);
    expect(second.signRequests).toHaveLength(0);
  });
});
