import { createPrivateKey, createPublicKey } from 'node:crypto';
import forge from 'node-forge';
import { describe, expect, it } from 'vitest';
import { newKeyAndCsr } from './key-and-csr.ts';

// The control plane reads CSRs with node-forge (control-plane/src/ca/ca.ts): the hand-written DER must parse and verify there.
function verifies(csrPem: string): boolean {
  try {
    return forge.pki.certificationRequestFromPem(csrPem).verify();
  } catch {
    return false;
  }
}

describe('newKeyAndCsr', () => {
  it('makes a PKCS#10 request for its own key that verifies', async () => {
    const { keyPem, csrPem } = await newKeyAndCsr();
    expect(verifies(csrPem)).toBe(true);
    const csr = forge.pki.certificationRequestFromPem(csrPem);
    expect((csr.subject.getField('CN') as { value: string } | null)?.value).toBe('airlock-sidecar');
    const ours = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'pem' }).toString();
    expect(forge.pki.publicKeyToPem(csr.publicKey as forge.pki.PublicKey).replace(/\r/g, '')).toBe(ours);
  });

  it('a request altered after signing does not verify', async () => {
    const { csrPem } = await newKeyAndCsr();
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const pem = (b: Buffer): string => `-----BEGIN CERTIFICATE REQUEST-----\n${b.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    expect(verifies(pem(der))).toBe(true);
    const subject = der.indexOf('airlock-sidecar');
    der[subject] = 'b'.charCodeAt(0); // the signed subject
    expect(verifies(pem(der))).toBe(false);
  });
});
