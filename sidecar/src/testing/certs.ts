import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import forge from 'node-forge';
import { randomSerialHex } from '@airlock/common/serial';
import { publicKeyOfCsr, signForKey, subjectKeyIdentifier } from '@airlock/common/x509';

/**
 * Throwaway certificate authorities for tests: each test mints its own CA, so nothing is shared
 * between tests and a "foreign CA" is one more call.
 */
export interface KeyAndCert {
  readonly keyPem: string;
  readonly certPem: string;
}

export interface LeafOptions {
  /** URI SANs, e.g. one SPIFFE ID (or two, to test that such a certificate is refused). */
  readonly uris?: readonly string[];
  readonly dnsNames?: readonly string[];
  readonly ips?: readonly string[];
  /** Validity from now; negative makes an expired certificate. Default one hour. */
  readonly ttlMs?: number;
  /** The serial as DER INTEGER hex (e.g. another certificate's, to test what a serial identifies). Default random. */
  readonly serial?: string;
}

export interface TestCa extends KeyAndCert {
  /** A leaf with a fresh RSA key: the shape of an X.509-SVID (CA:FALSE, serverAuth+clientAuth). */
  issue(options: LeafOptions): KeyAndCert;
  /** Signs a PKCS#10 CSR (PEM) the way the control plane would: the SANs come from `options`, not the CSR. */
  signCsr(csrPem: string, options: LeafOptions): string;
}

export function newRsaKeyPem(): string {
  return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

function altNames(o: LeafOptions): { type: number; value?: string; ip?: string }[] {
  return [
    ...(o.uris ?? []).map((value) => ({ type: 6, value })),
    ...(o.dnsNames ?? []).map((value) => ({ type: 2, value })),
    ...(o.ips ?? []).map((ip) => ({ type: 7, ip })),
  ];
}

export function createTestCa(commonName = 'Airlock Test CA'): TestCa {
  const caKeyPem = newRsaKeyPem();
  const caKey = forge.pki.privateKeyFromPem(caKeyPem);
  const caCert = forge.pki.createCertificate();
  caCert.publicKey = forge.pki.setRsaPublicKey(caKey.n, caKey.e);
  caCert.serialNumber = randomSerialHex();
  caCert.validity.notBefore = new Date(Date.now() - 60_000);
  caCert.validity.notAfter = new Date(Date.now() + 24 * 3_600_000);
  const subject = [{ name: 'commonName', value: commonName }];
  caCert.setSubject(subject);
  caCert.setIssuer(subject);
  caCert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  caCert.sign(caKey, forge.md.sha256.create());
  return caFromPem(forge.pki.certificateToPem(caCert), caKeyPem);
}

/** A TestCa over an existing CA (e.g. a control plane's data dir `ca.pem` + `ca.key`), to mint certificates it would trust. */
export function caFromPem(caCertPem: string, caKeyPem: string): TestCa {
  const caKey = forge.pki.privateKeyFromPem(caKeyPem);
  const caCert = forge.pki.certificateFromPem(caCertPem);

  /** `spki`: the DER SubjectPublicKeyInfo of the leaf's key (RSA or ECDSA). */
  function build(spki: Buffer, o: LeafOptions): string {
    const cert = forge.pki.createCertificate();
    cert.publicKey = caCert.publicKey; // a stand-in: signForKey puts `spki` in its place
    cert.serialNumber = o.serial ?? randomSerialHex();
    const ttl = o.ttlMs ?? 3_600_000;
    cert.validity.notBefore = new Date(Math.min(Date.now(), Date.now() + ttl) - 120_000);
    cert.validity.notAfter = new Date(Date.now() + ttl);
    cert.setSubject([]);
    cert.setIssuer(caCert.subject.attributes);
    cert.setExtensions([
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      { name: 'subjectAltName', critical: true, altNames: altNames(o) },
      { name: 'subjectKeyIdentifier', value: forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.OCTETSTRING, false, subjectKeyIdentifier(spki)) },
      { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
    ]);
    signForKey(cert, spki, caKey);
    return forge.pki.certificateToPem(cert);
  }

  return {
    keyPem: caKeyPem,
    certPem: caCertPem,
    issue(o) {
      const keyPem = newRsaKeyPem();
      return { keyPem, certPem: build(createPublicKey(keyPem).export({ type: 'spki', format: 'der' }), o) };
    },
    signCsr(csrPem, o) {
      return build(publicKeyOfCsr(csrPem), o);
    },
  };
}
