import { afterEach, describe, expect, it } from 'vitest';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { createTestCa, type TestCa } from '../testing/certs.ts';
import { quietLogger, testMetrics } from '../testing/fakes.ts';
import type { CertificateSigner, SignedCertificate, SignRequest } from './certificate-signer.ts';
import { IdentityProvider, renewalDelayMs } from './identity-provider.ts';
import type { Svid } from './svid.ts';

const ALICE = 'spiffe://airlock.test/ns/demo/sa/alice';

/** Signs in-process with a test CA; fails while `failuresLeft` > 0. */
class CaSigner implements CertificateSigner {
  readonly requests: SignRequest[] = [];
  failuresLeft = 0;
  readonly ca: TestCa;
  readonly ttlMs: number;
  constructor(ca: TestCa, ttlMs: number) {
    this.ca = ca;
    this.ttlMs = ttlMs;
  }

  sign(request: SignRequest): Promise<SignedCertificate> {
    this.requests.push(request);
    if (this.failuresLeft > 0) {
      this.failuresLeft--;
      return Promise.reject(new AirlockError(ErrorCode.UpstreamUnavailable, 'control plane unavailable'));
    }
    const certChainPem = this.ca.signCsr(request.csrPem, { uris: [ALICE], ttlMs: this.ttlMs });
    return Promise.resolve({ spiffeId: ALICE, certChainPem, trustBundlePem: this.ca.certPem, expiresAtMs: Date.now() + this.ttlMs });
  }

  close(): void {}
}

function waitForChanges(identity: IdentityProvider, n: number): Promise<Svid[]> {
  const seen: Svid[] = [];
  return new Promise((resolve) => {
    identity.onChange((s) => {
      seen.push(s);
      if (seen.length === n) resolve(seen);
    });
  });
}

describe('renewalDelayMs', () => {
  it('is half the remaining life, give or take a tenth', () => {
    const expires = new Date(10_000);
    expect(renewalDelayMs(expires, 0, () => 0)).toBe(4000);
    expect(renewalDelayMs(expires, 0, () => 0.5)).toBe(5000);
    expect(renewalDelayMs(expires, 0, () => 0.999)).toBeLessThan(6000);
    expect(renewalDelayMs(expires, 20_000, () => 0.5)).toBe(0);
  });
});

describe('IdentityProvider renewal', () => {
  const ca = createTestCa();
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanups.splice(0)) c();
  });

  function provider(renewer: CaSigner, random = 0.5): { identity: IdentityProvider; metrics: ReturnType<typeof testMetrics> } {
    const metrics = testMetrics();
    const identity = new IdentityProvider({
      signer: new CaSigner(ca, renewer.ttlMs),
      renewer,
      inboundAddress: () => '127.0.0.1:15006',
      expiryGauge: metrics.metrics.certificateExpiry,
      renewals: metrics.metrics.renewals,
      renewalFailures: metrics.metrics.renewalFailures,
      logger: quietLogger(),
      backoff: { initialMs: 50, maxMs: 100 },
      random: () => random,
    });
    cleanups.push(() => identity.close());
    return { identity, metrics };
  }

  it('renews at half life with a new key, presenting the SVID it holds', async () => {
    const renewer = new CaSigner(ca, 3000);
    const { identity, metrics } = provider(renewer);
    const changes = waitForChanges(identity, 3);
    identity.start();
    const [first, second, third] = await changes;
    expect(renewer.requests.map((r) => r.current)).toEqual([first, second]);
    expect(second?.keyPem).not.toBe(first?.keyPem);
    expect(third?.spiffeId).toBe(ALICE);
    expect(await metrics.registry.getSingleMetricAsString('airlock_sidecar_certificate_renewals_total')).toMatch(/ 2$/m);
  });

  it('keeps the SVID it holds while renewal fails, and retries until it succeeds', { timeout: 20_000 }, async () => {
    // Room for three failed attempts (each makes an RSA key) well before the first SVID expires.
    const renewer = new CaSigner(ca, 10_000);
    renewer.failuresLeft = 3;
    const { identity, metrics } = provider(renewer, 0);
    const changes = waitForChanges(identity, 2);
    identity.start();
    const first = await identity.ready();
    // While the renewals fail, the first SVID (still valid) is what is served.
    while (renewer.requests.length < 3) await new Promise((r) => setTimeout(r, 10));
    expect(identity.current()).toBe(first);
    expect(identity.notReadyReason()).toBeUndefined();
    const [, renewed] = await changes;
    expect(identity.current()).toBe(renewed);
    expect(renewer.requests).toHaveLength(4);
    expect(await metrics.registry.getSingleMetricAsString('airlock_sidecar_certificate_renewal_failures_total')).toMatch(/ 3$/m);
  });
});
