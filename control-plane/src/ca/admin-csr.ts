import forge from 'node-forge';
import { generateRsaKeyPair } from './ca.ts';

/**
 * A fresh key and a CSR for an admin client certificate, made where the key is to stay (the CLI):
 * the control plane only ever sees the CSR. Its subject is a placeholder; the CA sets the identity.
 */
export function newAdminKeyAndCsr(): { keyPem: string; csrPem: string } {
  const pair = generateRsaKeyPair();
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(pair.publicKeyPem);
  csr.setSubject([{ name: 'commonName', value: 'airlock-admin' }]);
  csr.sign(forge.pki.privateKeyFromPem(pair.privateKeyPem), forge.md.sha256.create());
  return { keyPem: pair.privateKeyPem, csrPem: forge.pki.certificationRequestToPem(csr) };
}
