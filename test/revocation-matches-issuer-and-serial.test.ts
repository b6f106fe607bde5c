import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminPost } from '../cli/src/admin-client.ts';
import { caFromPem, type KeyAndCert, type TestCa } from '../sidecar/src/testing/certs.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';

const AGENTS = ['alpha', 'beta', 'gamma'] as const;
const POLICY = policyYaml('agents', AGENTS, [{ name: 'alpha-to-gamma', from: 'alpha', to: 'gamma', methods: ['GET'], paths: ['/v1/*'] }]);

/** A canonical serial (lowercase hex, no leading zeros) as DER INTEGER hex. */
function derSerial(canonical: string): string {
  const even = canonical.length % 2 === 0 ? canonical : `0${canonical}`;
  return parseInt(even.slice(0, 2), 16) >= 0x80 ? `00${even}` : even;
}

/**
 * A serial is unique only per issuer, and a mesh may trust several CAs (here: a root rollover's
 * prepared root next to the active one). Revoking an identity must refuse its certificates, not
 * every certificate of any trusted CA that happens to carry one of their serials.
 */
describe('revocation at the inbound handshake', () => {
  let mesh: Mesh;
  let active: TestCa;
  let prepared: TestCa;

  /** GET /v1/direct on gamma's inbound port, presenting `client`: the status, or how the connection ended. */
  function direct(client: KeyAndCert): Promise<string> {
    return new Promise((resolve) => {
      const req = request(
        { host: '127.0.0.1', port: mesh.agent('gamma').inboundPort, path: '/v1/direct', headers: { host: 'gamma.agents' }, ca: readFileSync(join(mesh.dataDir, 'trust-bundle.pem'), 'utf8'), cert: client.certPem, key: client.keyPem, agent: false, timeout: 5000, checkServerIdentity: () => undefined },
        (res) => {
          res.resume();
          res.on('end', () => resolve(`status ${res.statusCode ?? 0}`));
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
      req.end();
    });
  }

  beforeAll(async () => {
    mesh = await startMesh({ agents: AGENTS, policy: POLICY });
    active = caFromPem(readFileSync(join(mesh.dataDir, 'ca.pem'), 'utf8'), readFileSync(join(mesh.dataDir, 'ca.key'), 'utf8'));
    // A second root, trusted by every sidecar but not issuing: its key is in the data dir.
    const { roots } = (await adminPost(mesh.creds, '/v1/ca/prepare', {})) as { roots: { id: string; state: string }[] };
    const id = roots.find((r) => r.state === 'prepared')?.id ?? '';
    const keyPem = readFileSync(join(mesh.dataDir, `ca-${id}.key`), 'utf8');
    const bundle = readFileSync(join(mesh.dataDir, 'trust-bundle.pem'), 'utf8');
    const certPem = bundle.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g)?.find((pem) => new X509Certificate(pem).checkPrivateKey(createPrivateKey(keyPem)));
    if (certPem === undefined) throw new Error('the prepared root is not in the trust bundle');
    prepared = caFromPem(certPem, keyPem);
  });
  afterAll(async () => mesh.close());

  it("refuses the revoked serial from its issuer, and admits another issuer's certificate with the same serial", { timeout: 60_000 }, async () => {
    const alpha = mesh.agent('alpha').identity;
    // The control case, and gamma trusting the prepared root (pushed to it by the control plane).
    expect(await direct(active.issue({ uris: [alpha] }))).toBe('status 200');
    await expect.poll(() => direct(prepared.issue({ uris: [alpha] })), { timeout: 20_000, interval: 200 }).toBe('status 200');

    const revoked = (await adminPost(mesh.creds, '/v1/agents/revoke', { identity: mesh.agent('beta').identity })) as { revokedSerials: string[] };
    const serial = revoked.revokedSerials[0] ?? '';
    expect(serial).not.toBe('');
    // Refused: the revoked serial from the issuer that revoked it (whatever identity the certificate names).
    const sameIssuer = active.issue({ uris: [alpha], serial: derSerial(serial) });
    await expect.poll(() => direct(sameIssuer), { timeout: 20_000, interval: 200 }).toMatch(/^error/);
    // Admitted: the same serial from the other trusted root is another certificate.
    expect(await direct(prepared.issue({ uris: [alpha], serial: derSerial(serial) }))).toBe('status 200');
    expect(await direct(active.issue({ uris: [alpha] }))).toBe('status 200');
  });
});
