import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type DetailedPeerCertificate } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminGet, adminPost } from '../cli/src/admin-client.ts';
import { caFromPem } from '../sidecar/src/testing/certs.ts';
import { createOperatorPki, type OperatorPki } from './support/operator-ca.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';

const AGENTS = ['alpha', 'beta'] as const;
const POLICY = policyYaml('agents', AGENTS, [{ name: 'alpha-to-beta', from: 'alpha', to: 'beta', methods: ['GET'], paths: ['/v1/*'] }]);

/** The certificate chain a sidecar's inbound port presents to a client with `client` (leaf first). */
function presentedChain(port: number, client: { certPem: string; keyPem: string }, caPem: string): Promise<DetailedPeerCertificate[]> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, cert: client.certPem, key: client.keyPem, ca: caPem, checkServerIdentity: () => undefined });
    socket.once('secureConnect', () => {
      const chain: DetailedPeerCertificate[] = [];
      let c: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
      while (c !== undefined && !chain.includes(c)) {
        chain.push(c);
        c = c.issuerCertificate === c ? undefined : c.issuerCertificate;
      }
      socket.destroy();
      resolve(chain);
    });
    socket.once('error', reject);
  });
}

describe('bring-your-own CA: an operator intermediate issues the SVIDs', () => {
  let pki: OperatorPki;
  let dir: string;
  let mesh: Mesh;
  beforeAll(async () => {
    pki = createOperatorPki();
    dir = mkdtempSync(join(tmpdir(), 'airlock-byo-'));
    writeFileSync(join(dir, 'tls.crt'), pki.intermediate.certPem);
    writeFileSync(join(dir, 'tls.key'), pki.intermediate.keyPem, { mode: 0o600 });
    writeFileSync(join(dir, 'ca.crt'), pki.root.certPem);
    mesh = await startMesh({
      agents: AGENTS,
      policy: POLICY,
      controlPlaneArgs: ['--ca-cert-file', join(dir, 'tls.crt'), '--ca-key-file', join(dir, 'tls.key'), '--ca-bundle-file', join(dir, 'ca.crt')],
    });
  });
  afterAll(async () => {
    await mesh.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a sidecar holding an SVID from the intermediate calls its peer, which verifies it against the operator root', async () => {
    const res = await mesh.call('alpha', 'GET', 'http://beta.agents/v1/hello');
    expect(res.status).toBe(200);
    expect(mesh.agent('beta').received.at(-1)?.headers['x-forwarded-client-cert']).toContain(`URI=${mesh.agent('alpha').identity}`);

    // What beta presents: its leaf, then the intermediate, chaining to the operator root only.
    const client = caFromPem(pki.intermediate.certPem, pki.intermediate.keyPem).issue({ uris: [mesh.agent('alpha').identity] });
    const chain = await presentedChain(mesh.agent('beta').inboundPort, { certPem: client.certPem + pki.intermediate.certPem, keyPem: client.keyPem }, pki.root.certPem);
    const leaf = new X509Certificate(chain[0]?.raw ?? Buffer.alloc(0));
    const intermediate = new X509Certificate(pki.intermediate.certPem);
    expect(leaf.subjectAltName).toBe(`URI:${mesh.agent('beta').identity}`);
    expect(leaf.checkIssued(intermediate) && leaf.verify(intermediate.publicKey)).toBe(true);
    expect(chain[1]?.fingerprint256).toBe(intermediate.fingerprint256);
  });

  it('reports the operator CA and refuses the self-made rollover steps', async () => {
    const status = (await adminGet(mesh.creds, '/v1/ca')) as { mode: string };
    expect(status.mode).toBe('operator');
    await expect(adminPost(mesh.creds, '/v1/ca/prepare', {})).rejects.toThrow(/supplied by the operator/);
  });
});
