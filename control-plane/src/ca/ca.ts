import { X509Certificate, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import forge from 'node-forge';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { randomSerialHex } from '@airlock/common/serial';
import { publicKeyOfCsr, signForKey, subjectKeyIdentifier } from '@airlock/common/x509';

const ROOT_LIFETIME_MS = 10 * 365 * 24 * 3_600_000;
// Clocks of sidecars may lag a little; a certificate valid "from now" would be refused by them.
const BACKDATE_MS = 60_000;

export interface IssuedSvid {
  /** The leaf alone. */
  readonly certPem: string;
  /** The leaf, then the intermediates up to (not including) the root: what the holder presents. */
  readonly chainPem: string;
  /** Id of the CA that signed it (CertificateAuthority.id). */
  readonly issuer: string;
  /** Lowercase hex, as stored in the registry. */
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface ServingCertificate extends IssuedSvid {
  readonly keyPem: string;
}

/** A CSR whose signature verified: only its public key is kept (DER SubjectPublicKeyInfo, as in the CSR). */
export interface VerifiedCsr {
  readonly publicKey: Buffer;
}

export interface KeyPairPem {
  readonly privateKeyPem: string;
  readonly publicKeyPem: string;
}

/** RSA 2048 from node:crypto (forge's own generator is far slower). */
export function generateRsaKeyPair(): KeyPairPem {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

interface LeafOptions {
  /** DER SubjectPublicKeyInfo: put in the leaf as is (forge encodes RSA keys only, the CSR's may be ECDSA). */
  readonly publicKey: Buffer;
  readonly spiffeId: string;
  readonly ttlMs: number;
  readonly dnsNames?: readonly string[];
  readonly ips?: readonly string[];
  /** `spiffeId` is an admin identity (adminSpiffeId), not a workload's. */
  readonly admin?: boolean;
}

export const ADMIN_NAME = /^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$/;

/** The identity of an admin client certificate. */
export function adminSpiffeId(trustDomain: string, name: string): string {
  return `spiffe://${trustDomain}/admin/${name}`;
}

/**
 * A CA that signs X.509-SVIDs from CSRs (only a CSR's public key is used): a self-made root of one
 * trust domain (created in the data dir on first start, `ca.key` 0600 and `ca.pem`), or an
 * intermediate supplied by the operator (then `chainPem` holds it and any intermediates above it).
 */
export class CertificateAuthority {
  readonly trustDomain: string;
  /** PEM of this CA's certificate (for a self-made root: what the trust bundle holds). */
  readonly certPem: string;
  /** PEM of this CA's certificate and the intermediates above it, sent after every leaf ('' for a root). */
  readonly chainPem: string;
  readonly publicKey: KeyObject;
  readonly x509: X509Certificate;
  /** Lowercase hex subject key identifier: how roots and issued certificates name this CA. */
  readonly id: string;
  readonly #cert: forge.pki.Certificate;
  readonly #key: forge.pki.rsa.PrivateKey;
  readonly #keyId: string;

  private constructor(trustDomain: string, certPem: string, keyPem: string, chainPem = '') {
    this.trustDomain = trustDomain;
    this.certPem = certPem;
    this.chainPem = chainPem;
    this.#cert = forge.pki.certificateFromPem(certPem);
    this.#key = forge.pki.privateKeyFromPem(keyPem);
    // The certificate's own SKI when it has one (an operator CA may compute it another way):
    // peers build the chain by matching our leaves' AKI to it.
    const ext: { subjectKeyIdentifier?: string } | undefined = this.#cert.getExtension('subjectKeyIdentifier');
    const ski = ext?.subjectKeyIdentifier;
    this.#keyId = ski === undefined ? this.#cert.generateSubjectKeyIdentifier().getBytes() : forge.util.hexToBytes(ski);
    this.id = forge.util.bytesToHex(this.#keyId).toLowerCase();
    this.publicKey = createPublicKey(certPem);
    this.x509 = new X509Certificate(certPem);
  }

  /** A new self-made root for `trustDomain`, not written anywhere (see CaRing.prepare). */
  static createRoot(trustDomain: string, now = new Date(), label?: string): { ca: CertificateAuthority; keyPem: string } {
    const { certPem, keyPem } = createRoot(trustDomain, now, label);
    return { ca: new CertificateAuthority(trustDomain, certPem, keyPem), keyPem };
  }

  /**
   * The operator's CA (e.g. an intermediate issued by cert-manager): `certPem` holds the signing
   * certificate first, then any intermediates above it; `keyPem` its RSA key.
   */
  static fromOperator(trustDomain: string, certPem: string, keyPem: string): CertificateAuthority {
    const blocks = splitPem(certPem);
    const first = blocks[0];
    if (first === undefined) throw new AirlockError(ErrorCode.Config, 'the CA certificate file holds no PEM certificate');
    let ca: CertificateAuthority;
    try {
      ca = new CertificateAuthority(trustDomain, first, keyPem, blocks.join(''));
    } catch (err) {
      throw new AirlockError(ErrorCode.Config, `cannot load the operator CA (an RSA key and its certificate): ${errorMessage(err)}`, { cause: err });
    }
    if (!ca.x509.ca) throw new AirlockError(ErrorCode.Config, 'the operator CA certificate is not a CA (basicConstraints CA:TRUE)');
    if (!ca.x509.checkPrivateKey(createPrivateKey(keyPem))) throw new AirlockError(ErrorCode.Config, 'the operator CA key does not match its certificate');
    return ca;
  }

  /** Loads `<dataDir>/ca.{key,pem}`, or creates them when neither exists. */
  static loadOrCreate(dataDir: string, trustDomain: string, now = new Date()): CertificateAuthority {
    const keyPath = join(dataDir, 'ca.key');
    const certPath = join(dataDir, 'ca.pem');
    const hasKey = existsSync(keyPath);
    const hasCert = existsSync(certPath);
    if (hasKey !== hasCert) {
      throw new AirlockError(ErrorCode.Config, `${hasKey ? certPath : keyPath} is missing while ${hasKey ? keyPath : certPath} exists; restore it or remove both to create a new CA`);
    }
    if (hasKey) {
      const ca = CertificateAuthority.fromPem(trustDomain, readFileSync(certPath, 'utf8'), readFileSync(keyPath, 'utf8'));
      const x509 = new X509Certificate(ca.certPem);
      if (x509.subjectAltName !== `URI:spiffe://${trustDomain}`) {
        throw new AirlockError(ErrorCode.Config, `the CA in ${certPath} is for "${x509.subjectAltName ?? 'no trust domain'}", not spiffe://${trustDomain}`);
      }
      return ca;
    }
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const { certPem, keyPem } = createRoot(trustDomain, now);
    // Key first and with its mode set at creation: it is never world-readable, even briefly.
    writeFileSync(keyPath, keyPem, { mode: 0o600, flag: 'wx' });
    chmodSync(keyPath, 0o600);
    writeFileSync(certPath, certPem, { mode: 0o644, flag: 'wx' });
    return new CertificateAuthority(trustDomain, certPem, keyPem);
  }

  static fromPem(trustDomain: string, certPem: string, keyPem: string): CertificateAuthority {
    try {
      return new CertificateAuthority(trustDomain, certPem, keyPem);
    } catch (err) {
      throw new AirlockError(ErrorCode.Config, `cannot load the CA: ${errorMessage(err)}`, { cause: err });
    }
  }

  /**
   * Signs an X.509-SVID for `spiffeId` from a PKCS#10 CSR. The CSR's signature must verify (the
   * caller holds the key); its subject and extensions are ignored.
   */
  issueSvid(csr: string | VerifiedCsr, spiffeId: string, ttlMs: number, now = new Date()): IssuedSvid {
    const verified = typeof csr === 'string' ? this.verifyCsr(csr) : csr;
    return this.#issueLeaf({ publicKey: verified.publicKey, spiffeId, ttlMs }, now);
  }

  /** Checks a CSR without issuing anything (so a bad CSR is refused before a join token is spent). */
  verifyCsr(csrPem: string): VerifiedCsr {
    return { publicKey: publicKeyOfCsr(csrPem) };
  }

  /**
   * The control plane's own serving certificate and a fresh key: its SPIFFE ID, DNS localhost and
   * `dnsNames` (serverDnsNames: the Service names the API server dials for the webhook), IP 127.0.0.1.
   */
  issueServingCertificate(spiffeId: string, ttlMs: number, dnsNames: readonly string[] = [], now = new Date()): ServingCertificate {
    const pair = generateRsaKeyPair();
    const issued = this.#issueLeaf(
      { publicKey: createPublicKey(pair.publicKeyPem).export({ type: 'spki', format: 'der' }), spiffeId, ttlMs, dnsNames: ['localhost', ...dnsNames.filter((n) => n !== 'localhost')], ips: ['127.0.0.1'] },
      now,
    );
    return { ...issued, keyPem: pair.privateKeyPem };
  }

  /**
   * Signs an admin client certificate from a CSR: URI SAN spiffe://<td>/admin/<name>, which no
   * workload identity (always /ns/<ns>/sa/<sa>) can be, so neither is ever taken for the other.
   */
  issueAdminCertificate(csrPem: string, name: string, ttlMs: number, now = new Date()): IssuedSvid {
    if (!ADMIN_NAME.test(name)) throw new AirlockError(ErrorCode.BadRequest, `"${name}" is not an admin name (a-z, 0-9, "-", ".")`);
    return this.#issueLeaf({ publicKey: this.verifyCsr(csrPem).publicKey, spiffeId: adminSpiffeId(this.trustDomain, name), ttlMs, admin: true }, now);
  }

  /** Whether `cert` was signed by this CA. */
  issued(cert: X509Certificate): boolean {
    return cert.checkIssued(this.x509) && cert.verify(this.publicKey);
  }

  #issueLeaf(o: LeafOptions, now: Date): IssuedSvid {
    const id = o.admin === true ? { trustDomain: this.trustDomain, uri: o.spiffeId } : parseSpiffeId(o.spiffeId);
    if (id.trustDomain !== this.trustDomain) {
      throw new AirlockError(ErrorCode.BadRequest, `${o.spiffeId} is not in trust domain ${this.trustDomain}`);
    }
    const cert = forge.pki.createCertificate();
    // A stand-in forge can encode: the TBS is built with it, then its key is replaced by the real one.
    cert.publicKey = this.#cert.publicKey;
    cert.serialNumber = randomSerialHex();
    const notBefore = new Date(now.getTime() - BACKDATE_MS);
    const notAfter = new Date(now.getTime() + o.ttlMs);
    cert.validity.notBefore = notBefore;
    cert.validity.notAfter = notAfter;
    // SPIFFE: the identity is the URI SAN; the subject carries nothing a peer should trust.
    cert.setSubject([{ name: 'organizationName', value: 'Airlock' }]);
    cert.setIssuer(this.#cert.subject.attributes);
    const altNames: { type: number; value?: string; ip?: string }[] = [{ type: 6, value: id.uri }];
    for (const dns of o.dnsNames ?? []) altNames.push({ type: 2, value: dns });
    for (const ip of o.ips ?? []) altNames.push({ type: 7, ip });
    cert.setExtensions([
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      { name: 'subjectAltName', altNames },
      // Given whole: forge would derive it from the stand-in key.
      { name: 'subjectKeyIdentifier', value: forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.OCTETSTRING, false, subjectKeyIdentifier(o.publicKey)) },
      { name: 'authorityKeyIdentifier', keyIdentifier: this.#keyId },
    ]);
    signForKey(cert, o.publicKey, this.#key);
    const certPem = forge.pki.certificateToPem(cert);
    return { certPem, chainPem: certPem + this.chainPem, issuer: this.id, serial: cert.serialNumber.replace(/^00/, ''), notBefore, notAfter };
  }
}

/** The PEM certificate blocks of a text, each ending in a newline. */
export function splitPem(text: string): string[] {
  return (text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((b) => `${b}\n`);
}

function createRoot(trustDomain: string, now: Date, label?: string): { certPem: string; keyPem: string } {
  const pair = generateRsaKeyPair();
  const key = forge.pki.privateKeyFromPem(pair.privateKeyPem);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(pair.publicKeyPem);
  cert.serialNumber = randomSerialHex();
  cert.validity.notBefore = new Date(now.getTime() - BACKDATE_MS);
  cert.validity.notAfter = new Date(now.getTime() + ROOT_LIFETIME_MS);
  const subject = [
    { name: 'organizationName', value: 'Airlock' },
    // A later root gets a label, so that two roots of one trust domain differ by name as well as key.
    { name: 'commonName', value: `Airlock root CA ${trustDomain}${label === undefined ? '' : ` ${label}`}` },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectAltName', altNames: [{ type: 6, value: `spiffe://${trustDomain}` }] },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(key, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: pair.privateKeyPem };
}
