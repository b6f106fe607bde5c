import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  AttributeTypeAndValue,
  AttributeValue,
  AuthorityKeyIdentifier,
  BasicConstraints,
  Certificate,
  Extension,
  Extensions,
  ExtendedKeyUsage,
  GeneralName,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_subjectAltName,
  id_ce_subjectKeyIdentifier,
  id_kp_serverAuth,
  KeyIdentifier,
  KeyUsage,
  KeyUsageFlags,
  Name,
  RelativeDistinguishedName,
  SubjectAlternativeName,
  SubjectKeyIdentifier,
  SubjectPublicKeyInfo,
  TBSCertificate,
  Validity,
  Version,
} from '@peculiar/asn1-x509';
import { ConfigError, errorMessage } from '@airlock/common/errors';

/** ecdsa-with-SHA256 (RFC 5758: no parameters). */
const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';
const OID_COMMON_NAME = '2.5.4.3';
const OID_ORGANIZATION = '2.5.4.10';
const HOUR_MS = 3_600_000;
/** A leaf lives a day; one with less than an hour left is minted again. */
const DEFAULT_LEAF_TTL_MS = 24 * HOUR_MS;
const DEFAULT_CACHE_SIZE = 1000;
/** The CA is made again at every start (its key lives only in this process): a year is plenty. */
const CA_TTL_MS = 365 * 24 * HOUR_MS;
/** Clocks of agent and sidecar differ a little. */
const BACKDATE_MS = 5 * 60_000;

export interface EgressCaOptions {
  /** Where the CA certificate (PEM) is written for the agent's trust store (`egressCaFile`); undefined = not written. */
  readonly certFile?: string;
  /**
   * Where the CA certificate followed by `roots` is written (`egressCaBundleFile`): a whole trust
   * store, for clients whose variable replaces their roots (SSL_CERT_FILE, REQUESTS_CA_BUNDLE);
   * undefined = not written.
   */
  readonly bundleFile?: string;
  /** The roots an agent trusts for the hosts it reaches through a tunnel (PEM): the bundle's tail. */
  readonly roots?: string;
  readonly leafTtlMs?: number;
  /** Leaf certificates kept, least recently used dropped first. */
  readonly cacheSize?: number;
  /** Counts each leaf minted. */
  readonly minted?: { inc(): void };
  readonly now?: () => number;
}

interface Leaf {
  readonly context: SecureContext;
  readonly certPem: string;
  readonly notAfter: number;
}

/**
 * The sidecar's egress CA for `tls: inspect`: an ECDSA P-256 key made at start that never leaves
 * this process (not written, not logged, not exported), a self-signed CA certificate written to
 * `certFile` for the agent to trust, and leaf certificates for the names the agent CONNECTs to,
 * minted on demand, short-lived (a day) and cached (bounded, LRU). Certificates are built with
 * @peculiar/asn1-x509 and signed with node:crypto (forge knows no ECDSA, and stays out of the sidecar).
 * The CA has no name constraints: the names it must vouch for are those of policies that change at
 * run time; what bounds it is that its key exists only in memory, and only this agent trusts it.
 */
export class EgressCa {
  readonly certPem: string;
  readonly #key: KeyObject;
  readonly #subject: Name;
  readonly #keyId: Buffer;
  readonly #notAfter: number;
  readonly #leaves = new Map<string, Leaf>();
  readonly #o: EgressCaOptions;

  private constructor(o: EgressCaOptions) {
    this.#o = o;
    const now = this.#now();
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.#key = privateKey;
    const spki = spkiOf(publicKey);
    this.#keyId = keyIdOf(spki);
    this.#subject = nameOf('Airlock sidecar egress CA');
    this.#notAfter = now + CA_TTL_MS;
    this.certPem = this.#issue({
      subject: this.#subject,
      spki,
      notAfter: this.#notAfter,
      extensions: [
        extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: true, pathLenConstraint: 0 })),
        extension(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign)),
        extension(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(this.#keyId)),
      ],
    });
  }

  /** A new CA, its certificate written to `certFile` and with `roots` to `bundleFile` (atomically: an agent never reads half of one). */
  static async create(o: EgressCaOptions = {}): Promise<EgressCa> {
    const ca = new EgressCa(o);
    if (o.certFile !== undefined) await writeAtomically(o.certFile, ca.certPem, 'egressCaFile');
    if (o.bundleFile !== undefined) await writeAtomically(o.bundleFile, `${ca.certPem.trimEnd()}\n${(o.roots ?? '').trim()}\n`, 'egressCaBundleFile');
    return ca;
  }

  /** The TLS context presenting a leaf for `host` (a name or an IP literal), minted when none is cached or it is near its end. */
  contextFor(host: string): SecureContext {
    return this.#leaf(host).context;
  }

  /** The leaf certificate (PEM) `contextFor(host)` presents. */
  leafPem(host: string): string {
    return this.#leaf(host).certPem;
  }

  #leaf(host: string): Leaf {
    const now = this.#now();
    const cached = this.#leaves.get(host);
    if (cached !== undefined && cached.notAfter - now > HOUR_MS) {
      // Most recently used last: the first key is the one to drop.
      this.#leaves.delete(host);
      this.#leaves.set(host, cached);
      return cached;
    }
    const leaf = this.#mint(host, now);
    this.#leaves.delete(host);
    this.#leaves.set(host, leaf);
    const max = this.#o.cacheSize ?? DEFAULT_CACHE_SIZE;
    while (this.#leaves.size > max) {
      const oldest = this.#leaves.keys().next().value;
      if (oldest === undefined) break;
      this.#leaves.delete(oldest);
    }
    return leaf;
  }

  #mint(host: string, now: number): Leaf {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const spki = spkiOf(publicKey);
    const notAfter = Math.min(now + (this.#o.leafTtlMs ?? DEFAULT_LEAF_TTL_MS), this.#notAfter);
    const san = isIP(host) === 0 ? new GeneralName({ dNSName: host }) : new GeneralName({ iPAddress: host });
    const certPem = this.#issue({
      subject: nameOf(host.slice(0, 64)),
      spki,
      notAfter,
      extensions: [
        extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: false })),
        extension(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.digitalSignature)),
        extension(id_ce_extKeyUsage, false, new ExtendedKeyUsage([id_kp_serverAuth])),
        extension(id_ce_subjectAltName, false, new SubjectAlternativeName([san])),
        extension(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(keyIdOf(spki))),
        extension(id_ce_authorityKeyIdentifier, false, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(this.#keyId) })),
      ],
    });
    this.#o.minted?.inc();
    const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    return { context: createSecureContext({ key: keyPem, cert: certPem }), certPem, notAfter };
  }

  #issue(c: { subject: Name; spki: SubjectPublicKeyInfo; notAfter: number; extensions: Extension[] }): string {
    const algorithm = new AlgorithmIdentifier({ algorithm: ECDSA_WITH_SHA256 });
    const serial = randomBytes(16);
    serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x01; // positive, and no leading zero byte
    const tbs = new TBSCertificate({
      version: Version.v3,
      serialNumber: toArrayBuffer(serial),
      signature: algorithm,
      issuer: this.#subject,
      validity: new Validity({ notBefore: new Date(this.#now() - BACKDATE_MS), notAfter: new Date(c.notAfter) }),
      subject: c.subject,
      subjectPublicKeyInfo: c.spki,
      extensions: new Extensions(c.extensions),
    });
    const tbsDer = Buffer.from(AsnConvert.serialize(tbs));
    const signature = sign('sha256', tbsDer, { key: this.#key, dsaEncoding: 'der' });
    const der = Buffer.from(AsnConvert.serialize(new Certificate({ tbsCertificate: tbs, signatureAlgorithm: algorithm, signatureValue: toArrayBuffer(signature) })));
    const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
    return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
  }

  #now(): number {
    return (this.#o.now ?? Date.now)();
  }
}

function toArrayBuffer(b: Buffer): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

function spkiOf(publicKey: KeyObject): SubjectPublicKeyInfo {
  return AsnConvert.parse(publicKey.export({ type: 'spki', format: 'der' }), SubjectPublicKeyInfo);
}

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
function keyIdOf(spki: SubjectPublicKeyInfo): Buffer {
  return createHash('sha1').update(Buffer.from(spki.subjectPublicKey)).digest();
}

function nameOf(commonName: string): Name {
  return new Name([
    new RelativeDistinguishedName([new AttributeTypeAndValue({ type: OID_ORGANIZATION, value: new AttributeValue({ utf8String: 'Airlock' }) })]),
    new RelativeDistinguishedName([new AttributeTypeAndValue({ type: OID_COMMON_NAME, value: new AttributeValue({ utf8String: commonName }) })]),
  ]);
}

function extension(extnID: string, critical: boolean, value: object): Extension {
  return new Extension({ extnID, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

async function writeAtomically(file: string, pem: string, setting: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await writeFile(tmp, pem, { mode: 0o644 });
    await rename(tmp, file);
  } catch (err) {
    throw new ConfigError([`${setting}: cannot write the egress CA certificate to ${file}: ${errorMessage(err)}`]);
  }
}
