import { X509Certificate, createPrivateKey } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '@airlock/common/errors';
import { createRootLogger } from '@airlock/common/logging';
import { freePort } from '../../../test/support/ports.ts';
import { createTestCa } from '../testing/certs.ts';
import { controlPlaneIdOf, startFakeControlPlane, type FakeControlPlane } from '../testing/fake-control-plane.ts';
import { quietLogger, testMetrics } from '../testing/fakes.ts';
import { JoinTokenSigner } from './certificate-signer.ts';
import { oneControlPlane } from '../controlplane/control-plane-pool.ts';
import { IdentityProvider } from './identity-provider.ts';
import type { KeyType } from './key-and-csr.ts';
import type { Svid } from './svid.ts';

const TD = 'airlock.test';
const ALICE = `spiffe://${TD}/ns/demo/sa/alice`;

describe('IdentityProvider with a join token', () => {
  const ca = createTestCa();
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  function provider(port: number, o: { joinToken?: string; controlPlaneId?: string; keyType?: KeyType } = {}): { identity: IdentityProvider; metrics: ReturnType<typeof testMetrics> } {
    const metrics = testMetrics();
    const signer = new JoinTokenSigner({ ...oneControlPlane(`127.0.0.1:${port}`), caPem: ca.certPem, controlPlaneId: o.controlPlaneId ?? controlPlaneIdOf(TD), joinToken: o.joinToken ?? 'tok-1' });
    const identity = new IdentityProvider({ signer, inboundAddress: () => '127.0.0.1:15006', expiryGauge: metrics.metrics.certificateExpiry, logger: quietLogger(), backoff: { initialMs: 50, maxMs: 200 }, ...(o.keyType === undefined ? {} : { keyType: o.keyType }) });
    cleanups.push(() => identity.close());
    return { identity, metrics };
  }

  async function controlPlane(port?: number): Promise<FakeControlPlane> {
    const cp = await startFakeControlPlane({ ca, servingId: controlPlaneIdOf(TD), ...(port === undefined ? {} : { port }) });
    cp.tokens.set('tok-1', ALICE);
    cleanups.push(() => cp.stop());
    return cp;
  }

  it('retries while the control plane is unreachable, then holds an SVID for its own key', async () => {
    const port = await freePort();
    const { identity, metrics } = provider(port);
    const changes: Svid[] = [];
    identity.onChange((s) => changes.push(s));
    identity.start();
    await new Promise((r) => setTimeout(r, 300));
    expect(identity.current()).toBeUndefined();
    expect(identity.notReadyReason()).toMatch(/^no SVID yet/);

    const cp = await controlPlane(port);
    const svid = await identity.ready();
    expect(svid.spiffeId).toBe(ALICE);
    expect(identity.current()).toBe(svid);
    expect(changes).toEqual([svid]);
    expect(identity.notReadyReason()).toBeUndefined();
    expect(svid.trustBundlePem).toBe(ca.certPem);
    expect(svid.expiresAt.getTime()).toBeGreaterThan(Date.now());
    expect(cp.signRequests[0]).toMatchObject({ joinToken: 'tok-1', inboundAddress: '127.0.0.1:15006' });
    expect(cp.signRequests[0]?.csrPem).toContain('BEGIN CERTIFICATE REQUEST');
    expect(svid.keyPem).not.toBe('');
    const gauge = await metrics.registry.getSingleMetricAsString('airlock_sidecar_certificate_expiry_timestamp_seconds');
    expect(gauge).toContain(String(Math.floor(svid.expiresAt.getTime() / 1000)));
  });

  it('sends the same key and inbound address again after an attempt that got no answer (the token may be spent by it)', async () => {
    const cp = await controlPlane();
    cp.failNextSigns = 2;
    const { identity } = provider(cp.port);
    identity.start();
    const svid = await identity.ready();
    expect(cp.signRequests).toHaveLength(3);
    expect(new Set(cp.signRequests.map((r) => r.csrPem)).size).toBe(1);
    expect(new Set(cp.signRequests.map((r) => r.inboundAddress))).toEqual(new Set(['127.0.0.1:15006']));
    expect(new X509Certificate(svid.certChainPem).checkPrivateKey(createPrivateKey(svid.keyPem))).toBe(true);
  });

  it.each([
    [undefined, 'ec'],
    ['rsa-2048', 'rsa'],
  ] as const)('with keyType %s, holds an SVID for a %s key', async (keyType, expected) => {
    const cp = await controlPlane();
    const { identity } = provider(cp.port, keyType === undefined ? {} : { keyType });
    identity.start();
    const svid = await identity.ready();
    expect(createPrivateKey(svid.keyPem).asymmetricKeyType).toBe(expected);
    expect(new X509Certificate(svid.certChainPem).publicKey.asymmetricKeyType).toBe(expected);
  });

  it('stops and says why when the join token is refused', async () => {
    const cp = await controlPlane();
    const { identity } = provider(cp.port, { joinToken: 'wrong' });
    identity.start();
    await expect(identity.ready()).rejects.toMatchObject({ code: ErrorCode.Attestation });
    expect(identity.notReadyReason()).toContain('join token is not valid');
  });

  it('logs a refused join token with its code and reason, never the token', async () => {
    const cp = await controlPlane();
    const lines: Record<string, unknown>[] = [];
    const logger = createRootLogger({ process: 'test', level: 'info', destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) } });
    const token = 'at_refused_SECRET-1234567890';
    const signer = new JoinTokenSigner({ ...oneControlPlane(`127.0.0.1:${cp.port}`), caPem: ca.certPem, controlPlaneId: controlPlaneIdOf(TD), joinToken: token });
    const identity = new IdentityProvider({ signer, inboundAddress: () => '127.0.0.1:15006', expiryGauge: testMetrics().metrics.certificateExpiry, logger, backoff: { initialMs: 50, maxMs: 200 } });
    cleanups.push(() => identity.close());
    identity.start();
    await expect(identity.ready()).rejects.toMatchObject({ code: ErrorCode.Attestation });
    const line = lines.find((l) => l.msg === 'cannot obtain an SVID');
    expect(line).toMatchObject({ level: 'error', code: ErrorCode.Attestation, reason: expect.stringContaining('join token is not valid') as unknown });
    expect(JSON.stringify(lines)).not.toContain('SECRET-1234567890');
  });

  it('does not talk to a server that presents another SPIFFE ID than the control plane', async () => {
    const cp = await controlPlane();
    const { identity } = provider(cp.port, { controlPlaneId: `spiffe://${TD}/ns/demo/sa/impostor` });
    identity.start();
    await new Promise((r) => setTimeout(r, 400));
    expect(identity.current()).toBeUndefined();
    expect(cp.signRequests).toHaveLength(0);
  });
});
