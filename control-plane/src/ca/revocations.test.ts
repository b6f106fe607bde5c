import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode } from '@airlock/common/errors';
import { createRootLogger } from '@airlock/common/logging';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { createRegistry } from '@airlock/common/telemetry';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JoinTokens } from '../attestation/join-tokens.ts';
import { REVOKED_REASON } from '@airlock/common/reason-class';
import { denyIfContained } from '../authz/contained.ts';
import { AgentRegistry } from '../authz/registry.ts';
import { DecisionState } from '../authz/decision-state.ts';
import { PolicyEngine } from '../policy/engine.ts';
import { CertificateIssuer } from '../api/identity/sign-certificate.ts';
import { createControlPlaneMetrics } from '../monitoring/metrics.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import { CertificateAuthority } from './ca.ts';
import { Revocations, type TrustBundleSnapshot } from './revocations.ts';
import { makeCsr } from './test-csr.ts';
import { NO_AUDIT } from '../audit/event.ts';

const TD = 'airlock.test';
const A = `spiffe://${TD}/ns/demo/sa/a`;
const B = `spiffe://${TD}/ns/demo/sa/b`;

describe('revocation', () => {
  let dir: string;
  let store: SqliteStore;
  let ca: CertificateAuthority;
  let revocations: Revocations;
  let issuer: CertificateIssuer;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-revoke-'));
    store = SqliteStore.open(dir);
    ca = CertificateAuthority.loadOrCreate(dir, TD);
    revocations = await Revocations.load({ store, decisions: new DecisionState(PolicyEngine.empty(TD)), trustBundlePem: () => ca.certPem });
    const metrics = createControlPlaneMetrics(createRegistry('test'));
    issuer = new CertificateIssuer({ ca: { issuing: () => ca, bundlePem: () => ca.certPem }, joinTokens: new JoinTokens(store, TD), store, agents: await AgentRegistry.load(store, new DecisionState(PolicyEngine.empty(TD))), revocations, svidTtlMs: 60_000, metrics, logger: createRootLogger({ process: 'test', level: 'error' }), audit: NO_AUDIT });
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('pushes the unexpired serials of a revoked identity to watchers, once', async () => {
    const a1 = await issuer.signCertificate(parseSpiffeId(A), { csrPem: makeCsr().csrPem, inboundAddress: '' });
    await issuer.signCertificate(parseSpiffeId(B), { csrPem: makeCsr().csrPem, inboundAddress: '' });
    const pushed: TrustBundleSnapshot[] = [];
    revocations.watch((s) => pushed.push(s));
    const result = await revocations.revoke(A);
    expect(result.newlyRevoked).toBe(true);
    expect(result.serials).toHaveLength(1);
    expect(pushed).toHaveLength(1);
    expect(pushed[0]?.revokedSpiffeIds).toEqual([A]);
    expect(pushed[0]?.trustBundlePem).toBe(ca.certPem);
    // The certificate pushed is the one a TLS peer presents: its issuer as Node prints it (no
    // issuerName given here: any issuer), its serial in canonical form.
    const presented = new X509Certificate(a1.certChainPem).serialNumber;
    expect(pushed[0]?.revokedCertificates).toEqual([{ issuer: '', serial: presented.toLowerCase().replace(/^0+/, '') }]);
    expect((await revocations.revoke(A)).newlyRevoked).toBe(false);
    expect(pushed).toHaveLength(1);
    expect(revocations.isRevoked(B)).toBe(false);
  });

  it("names each revoked certificate's issuer as a TLS peer's certificate does (a serial is unique only per issuer)", async () => {
    const a1 = await issuer.signCertificate(parseSpiffeId(A), { csrPem: makeCsr().csrPem, inboundAddress: '' });
    const named = await Revocations.load({ store, decisions: new DecisionState(PolicyEngine.empty(TD)), trustBundlePem: () => ca.certPem, issuerName: (id) => (id === ca.id ? ca.x509.subject : undefined) });
    await named.revoke(A);
    const presented = new X509Certificate(a1.certChainPem);
    expect(named.snapshot().revokedCertificates).toEqual([{ issuer: presented.issuer, serial: presented.serialNumber.toLowerCase().replace(/^0+/, '') }]);
    // An issuer no longer known (a retired root): that serial from any issuer, rather than none.
    const unknown = await Revocations.load({ store, decisions: new DecisionState(PolicyEngine.empty(TD)), trustBundlePem: () => ca.certPem, issuerName: () => undefined });
    expect(unknown.snapshot().revokedCertificates.map((c) => c.issuer)).toEqual(['']);
  });

  it('survives a restart', async () => {
    await revocations.revoke(A, 5);
    expect((await Revocations.load({ store, decisions: new DecisionState(PolicyEngine.empty(TD)), trustBundlePem: () => '' })).isRevoked(A)).toBe(true);
  });

  it('refuses renewal and join tokens for a revoked identity', async () => {
    await revocations.revoke(A);
    await expect(issuer.signCertificate(parseSpiffeId(A), { csrPem: makeCsr().csrPem, inboundAddress: '' })).rejects.toMatchObject({
      code: ErrorCode.PermissionDenied,
      message: expect.stringContaining('revoked') as unknown,
    });
    const { token } = await new JoinTokens(store, TD).createJoinToken(A);
    await expect(issuer.signCertificate(undefined, { csrPem: makeCsr().csrPem, joinToken: token, inboundAddress: '127.0.0.1:1' })).rejects.toThrow(/revoked/);
  });

  it('turns any decision naming a revoked identity into a deny no dry-run lifts', () => {
    const allow = { allow: true, policy: 'p', reason: 'allowed by p', dryRunDeny: false };
    const isRevoked = (id: string): boolean => id === B;
    expect(denyIfContained(allow, { source: parseSpiffeId(A), destination: parseSpiffeId(B) }, isRevoked, REVOKED_REASON)).toEqual({ allow: false, policy: '', reason: REVOKED_REASON, dryRunDeny: false });
    expect(denyIfContained(allow, { source: parseSpiffeId(B), destination: undefined }, isRevoked, REVOKED_REASON).allow).toBe(false);
    expect(denyIfContained(allow, { source: parseSpiffeId(A), destination: undefined }, isRevoked, REVOKED_REASON)).toBe(allow);
  });
});
