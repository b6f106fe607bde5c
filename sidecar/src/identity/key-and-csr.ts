import { generateKeyPair } from 'node:crypto';
import { promisify } from 'node:util';
import forge from 'node-forge';

const generateKeyPairAsync = promisify(generateKeyPair);

export interface KeyAndCsr {
  readonly keyPem: string;
  readonly csrPem: string;
}

/**
 * A fresh RSA 2048 key (off the event loop) and a CSR for it. The CSR's subject is a placeholder:
 * the control plane decides the SVID's contents from the attested identity.
 */
export async function newKeyAndCsr(): Promise<KeyAndCsr> {
  const { privateKey, publicKey } = await generateKeyPairAsync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
  csr.setSubject([{ name: 'commonName', value: 'airlock-sidecar' }]);
  csr.sign(forge.pki.privateKeyFromPem(keyPem), forge.md.sha256.create());
  return { keyPem, csrPem: forge.pki.certificationRequestToPem(csr) };
}
