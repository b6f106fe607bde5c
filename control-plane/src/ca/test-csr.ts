import forge from 'node-forge';
import { generateRsaKeyPair } from './ca.ts';

/**
 * For tests: a key pair and a CSR signed by it, as a sidecar would make them; or, with `uriSans`, as
 * an attacker would, asking for names of its choosing.
 */
export function makeCsr(commonName = 'test', uriSans: readonly string[] = []): { csrPem: string; keyPem: string } {
  const pair = generateRsaKeyPair();
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(pair.publicKeyPem);
  csr.setSubject([{ name: 'commonName', value: commonName }]);
  if (uriSans.length > 0) csr.setAttributes([{ name: 'extensionRequest', extensions: [{ name: 'subjectAltName', altNames: uriSans.map((value) => ({ type: 6, value })) }] }]);
  csr.sign(forge.pki.privateKeyFromPem(pair.privateKeyPem), forge.md.sha256.create());
  return { csrPem: forge.pki.certificationRequestToPem(csr), keyPem: pair.privateKeyPem };
}
