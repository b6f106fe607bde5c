// With the operator's CA (an intermediate from cert-manager), the control plane's serving
// certificate, which signs audit checkpoints, chains through that intermediate: a verifier holding
// only the operator's root checks it; one holding another root does not.
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditChains } from '../control-plane/src/audit/verify-chain.ts';
import { auditEventsOf } from '../control-plane/src/testing/audit-events.ts';
import { adminFetch, RESEARCHERS_TO_EXAMPLE, startTestControlPlane, type TestControlPlane } from '../control-plane/src/testing/test-control-plane.ts';
import { createOperatorPki, type OperatorPki } from './support/operator-ca.ts';

describe('audit checkpoints under an operator CA', () => {
  let dir: string;
  let pki: OperatorPki;
  let t: TestControlPlane;
  let lines: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-audit-operator-'));
    pki = createOperatorPki();
    writeFileSync(join(dir, 'tls.crt'), pki.intermediate.certPem);
    writeFileSync(join(dir, 'tls.key'), pki.intermediate.keyPem);
    writeFileSync(join(dir, 'ca.crt'), pki.root.certPem);
    t = await startTestControlPlane(RESEARCHERS_TO_EXAMPLE, 'airlock-audit-operator-cp-', {}, { caCertFile: join(dir, 'tls.crt'), caKeyFile: join(dir, 'tls.key'), caBundleFile: join(dir, 'ca.crt'), auditCheckpointEvery: '5' });
    // Admin actions make events without an SVID of the operator's CA.
    for (let i = 0; i < 12; i++) {
      const res = await adminFetch(t.cp, '/v1/join-tokens', { method: 'POST', headers: { authorization: `Bearer ${t.cp.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ identity: `spiffe://airlock.test/ns/agents/sa/a${i}` }) });
      expect(res.status).toBe(201);
    }
    await t.close();
    lines = t.logs.map((l) => JSON.stringify(l)).join('\n');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('signs with a certificate whose chain holds the intermediate, checked against the operator root alone', () => {
    const checkpoints = auditEventsOf(t.logs).filter((e) => e.kind === 'checkpoint');
    expect(checkpoints.length).toBeGreaterThanOrEqual(3);
    const certificates = (checkpoints[0]?.signature as { certificates: string[] }).certificates;
    expect(certificates).toHaveLength(2);
    expect(new X509Certificate(Buffer.from(certificates[1] ?? '', 'base64')).fingerprint256).toBe(new X509Certificate(pki.intermediate.certPem).fingerprint256);
    const r = verifyAuditChains([{ name: 'cp.log', text: lines }], { roots: [new X509Certificate(pki.root.certPem)] });
    expect(r.broken).toBeUndefined();
    expect(r.warnings).toEqual([]);
  });

  it('refuses the checkpoints against another root', () => {
    const other = createOperatorPki();
    const r = verifyAuditChains([{ name: 'cp.log', text: lines }], { roots: [new X509Certificate(other.root.certPem)] });
    expect(r.broken?.what).toBe('checkpoint not valid: its signer certificate does not chain to the trust bundle given');
  });
});
