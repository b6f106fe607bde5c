import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { CertificationRequest } from '@peculiar/asn1-csr';
import { AsnConvert } from '@peculiar/asn1-schema';
import { SubjectPublicKeyInfo } from '@peculiar/asn1-x509';
import forge from 'node-forge';
import { AirlockError, ErrorCode, errorMessage } from './errors.ts';

// X.509 for SVIDs, shared by the control plane's CA and the sidecar's test CA: which CSRs are
// accepted, and forge certificates over keys forge cannot encode (ECDSA). A running sidecar never
// imports this (it keeps forge out of its heap: identity/key-and-csr.ts).

const MIN_RSA_BITS = 2048;
/** The EC curves a CSR key may use (node:crypto's names), as SPIFFE implementations make them. */
const CURVES: ReadonlyMap<string, string> = new Map([['prime256v1', 'P-256'], ['secp384r1', 'P-384']]);
/** CSR signature algorithms accepted, by OID: the hash each uses. */
const CSR_SIGNATURES: ReadonlyMap<string, { readonly key: 'rsa' | 'ec'; readonly hash: string }> = new Map([
  ['1.2.840.113549.1.1.11', { key: 'rsa', hash: 'sha256' }],
  ['1.2.840.113549.1.1.12', { key: 'rsa', hash: 'sha384' }],
  ['1.2.840.113549.1.1.13', { key: 'rsa', hash: 'sha512' }],
  ['1.2.840.10045.4.3.2', { key: 'ec', hash: 'sha256' }],
  ['1.2.840.10045.4.3.3', { key: 'ec', hash: 'sha384' }],
  ['1.2.840.10045.4.3.4', { key: 'ec', hash: 'sha512' }],
]);
/** What a CSR's key may be: said in every refusal of one. */
export const ACCEPTED_CSR_KEYS = `ECDSA P-256, ECDSA P-384 or RSA of at least ${MIN_RSA_BITS} bits`;

/**
 * Signs `cert` (built by forge around a stand-in key) for the key `spki`: forge's TBS gets the real
 * SubjectPublicKeyInfo in place of the stand-in's, then is signed again with the CA key.
 */
export function signForKey(cert: forge.pki.Certificate, spki: Buffer, caKey: forge.pki.rsa.PrivateKey): void {
  cert.sign(caKey, forge.md.sha256.create());
  const tbs = cert.tbsCertificate;
  const fields = tbs.value as forge.asn1.Asn1[];
  // TBSCertificate: version, serial, signature, issuer, validity, subject, subjectPublicKeyInfo, …
  fields[6] = forge.asn1.fromDer(forge.util.createBuffer(spki.toString('binary')));
  const md = forge.md.sha256.create();
  md.update(forge.asn1.toDer(tbs).getBytes());
  cert.signature = caKey.sign(md);
}

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits, as forge bytes. */
export function subjectKeyIdentifier(spki: Buffer): string {
  const { subjectPublicKey } = AsnConvert.parse(spki, SubjectPublicKeyInfo);
  return createHash('sha1').update(Buffer.from(subjectPublicKey)).digest('binary');
}

/**
 * The public key (DER SPKI) of a CSR whose self-signature verifies and whose key is one of
 * ACCEPTED_CSR_KEYS; anything else is a bad request. Parsed with @peculiar/asn1-csr, checked with
 * node:crypto (forge knows RSA only).
 */
export function publicKeyOfCsr(csrPem: string): Buffer {
  let csr: CertificationRequest;
  let der: Buffer;
  try {
    const m = /^\s*-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----([A-Za-z0-9+/=\s]+)-----END (?:NEW )?CERTIFICATE REQUEST-----\s*$/.exec(csrPem);
    if (m?.[1] === undefined) throw new Error('no CERTIFICATE REQUEST block');
    der = Buffer.from(m[1].replace(/\s/g, ''), 'base64');
    csr = AsnConvert.parse(der, CertificationRequest);
  } catch (err) {
    throw new AirlockError(ErrorCode.BadRequest, `the CSR is not a PEM PKCS#10 request (${ACCEPTED_CSR_KEYS}): ${errorMessage(err)}`);
  }
  const spki = Buffer.from(AsnConvert.serialize(csr.certificationRequestInfo.subjectPKInfo));
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (err) {
    throw new AirlockError(ErrorCode.BadRequest, `the CSR key is not one accepted (${ACCEPTED_CSR_KEYS}): ${errorMessage(err)}`);
  }
  const keyName = describeKey(key);
  if (keyName === undefined) throw new AirlockError(ErrorCode.BadRequest, `the CSR key must be ${ACCEPTED_CSR_KEYS}; it is ${keyLabel(key)}`);
  const alg = CSR_SIGNATURES.get(csr.signatureAlgorithm.algorithm);
  if (alg === undefined || alg.key !== key.asymmetricKeyType) {
    throw new AirlockError(ErrorCode.BadRequest, `the CSR signature algorithm ${csr.signatureAlgorithm.algorithm} is not one accepted for ${keyName} (SHA-256/384/512 with RSA PKCS#1 v1.5 or ECDSA)`);
  }
  const info = Buffer.from(csr.certificationRequestInfoRaw ?? AsnConvert.serialize(csr.certificationRequestInfo));
  let valid: boolean;
  try {
    valid = verify(alg.hash, info, key, Buffer.from(csr.signature));
  } catch {
    valid = false;
  }
  if (!valid) throw new AirlockError(ErrorCode.BadRequest, 'the CSR signature does not verify');
  return spki;
}

/** "ECDSA P-256" etc. when the key is one accepted; undefined otherwise. */
function describeKey(key: KeyObject): string | undefined {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') return (d?.modulusLength ?? 0) >= MIN_RSA_BITS ? `RSA ${d?.modulusLength}` : undefined;
  if (key.asymmetricKeyType === 'ec') {
    const curve = CURVES.get(d?.namedCurve ?? '');
    return curve === undefined ? undefined : `ECDSA ${curve}`;
  }
  return undefined;
}

function keyLabel(key: KeyObject): string {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') return `RSA of ${d?.modulusLength ?? '?'} bits`;
  if (key.asymmetricKeyType === 'ec') return `EC on ${d?.namedCurve ?? 'an unnamed curve'}`;
  return key.asymmetricKeyType ?? 'of an unknown type';
}
