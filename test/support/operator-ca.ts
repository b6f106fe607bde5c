import forge from 'node-forge';
import { randomSerialHex } from '@airlock/common/serial';
import { createTestCa, newRsaKeyPem, type KeyAndCert } from '../../sidecar/src/testing/certs.ts';

/** An operator's PKI as cert-manager would hold it: a root, and an intermediate CA it signed. */
export interface OperatorPki {
  readonly root: KeyAndCert;
  readonly intermediate: KeyAndCert;
}

export function createOperatorPki(): OperatorPki {
  const root = createTestCa('Operator Root CA');
  const rootCert = forge.pki.certificateFromPem(root.certPem);
  const rootKey = forge.pki.privateKeyFromPem(root.keyPem);
  const keyPem = newRsaKeyPem();
  const key = forge.pki.privateKeyFromPem(keyPem);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  cert.serialNumber = randomSerialHex();
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 24 * 3_600_000);
  cert.setSubject([{ name: 'commonName', value: 'Operator Mesh Intermediate CA' }]);
  cert.setIssuer(rootCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: rootCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(rootKey, forge.md.sha256.create());
  return { root: { certPem: root.certPem, keyPem: root.keyPem }, intermediate: { certPem: forge.pki.certificateToPem(cert), keyPem } };
}
