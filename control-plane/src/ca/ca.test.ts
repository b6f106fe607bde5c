import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import forge from 'node-forge';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from './ca.ts';
import { makeCsr } from './test-csr.ts';

const TD = 'airlock.test';
const ID = `spiffe://${TD}/ns/demo/sa/researcher`;

/** A CSR made by OpenSSL (as a non-Airlock SPIFFE client would) for a key of the given kind. */
function opensslCsr(key: Parameters<typeof generateKeyPairSync>[1] & object, type: 'ec' | 'rsa' | 'ed25519', digest = '-sha256'): { csrPem: string; keyPem: string } {
  const keyPem = (generateKeyPairSync as (t: string, o: object) => { privateKey: { export(o: object): string | Buffer } })(type, key).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const dir = mkdtempSync(join(tmpdir(), 'airlock-csr-'));
  try {
    writeFileSync(join(dir, 'key.pem'), keyPem, { mode: 0o600 });
    const args = ['req', '-new', '-key', join(dir, 'key.pem'), '-subj', '/CN=gopher'];
    if (type !== 'ed25519') args.push(digest);
    return { csrPem: execFileSync('openssl', args, { encoding: 'utf8' }), keyPem };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('CertificateAuthority', () => {
  let dir: string;
  let ca: CertificateAuthority;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-ca-'));
    ca = CertificateAuthority.loadOrCreate(dir, TD);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('creates a root CA with a 0600 key and loads the same one afterwards', () => {
    expect(statSync(join(dir, 'ca.key')).mode & 0o777).toBe(0o600);
    const root = new X509Certificate(readFileSync(join(dir, 'ca.pem')));
    expect(root.ca).toBe(true);
    expect(root.subjectAltName).toBe(`URI:spiffe://${TD}`);
    expect(root.verify(root.publicKey)).toBe(true);
    const years = (Date.parse(root.validTo) - Date.parse(root.validFrom)) / (365 * 24 * 3_600_000);
    expect(years).toBeGreaterThan(9.9);
    expect(CertificateAuthority.loadOrCreate(dir, TD).certPem).toBe(ca.certPem);
  });

  it('refuses to load a CA of another trust domain', () => {
    expect(() => CertificateAuthority.loadOrCreate(dir, 'other.test')).toThrow(/not spiffe:\/\/other.test/);
  });

  it('issues an X.509-SVID with exactly one URI SAN, CA:FALSE, verifiable by the root, for the TTL', () => {
    const { csrPem, keyPem } = makeCsr('ignored-subject');
    const ttl = 3_600_000;
    const issued = ca.issueSvid(csrPem, ID, ttl);
    const cert = new X509Certificate(issued.certPem);
    expect(cert.subjectAltName).toBe(`URI:${ID}`);
    expect(cert.ca).toBe(false);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.checkPrivateKey(createPrivateKey(keyPem))).toBe(true);
    const lifetime = Date.parse(cert.validTo) - Date.parse(cert.validFrom);
    expect(Math.abs(lifetime - (ttl + 60_000))).toBeLessThan(2_000);
    expect(cert.serialNumber.toLowerCase()).toBe(issued.serial);
    expect(cert.keyUsage).toEqual(expect.arrayContaining(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']));
    const parsed = forge.pki.certificateFromPem(issued.certPem);
    const ku = parsed.getExtension('keyUsage') as { critical: boolean; digitalSignature: boolean; keyCertSign?: boolean };
    expect(ku.critical).toBe(true);
    expect(ku.digitalSignature).toBe(true);
    expect(ku.keyCertSign).toBeFalsy();
    expect(parsed.getExtension('subjectKeyIdentifier')).toBeTruthy();
    expect(parsed.getExtension('authorityKeyIdentifier')).toBeTruthy();
  });

  it.each([
    ['ECDSA P-256', { namedCurve: 'P-256' }, 'ec', '-sha256'],
    ['ECDSA P-384', { namedCurve: 'P-384' }, 'ec', '-sha384'],
    ['RSA 3072', { modulusLength: 3072 }, 'rsa', '-sha256'],
  ] as const)('issues an SVID for a %s key over that very key, with the same SPIFFE properties', (_name, opts, type, digest) => {
    const { csrPem, keyPem } = opensslCsr(opts, type, digest);
    const issued = ca.issueSvid(csrPem, ID, 3_600_000);
    const cert = new X509Certificate(issued.certPem);
    expect(cert.checkPrivateKey(createPrivateKey(keyPem))).toBe(true);
    expect(cert.publicKey.asymmetricKeyType).toBe(type);
    expect(cert.subjectAltName).toBe(`URI:${ID}`);
    expect(cert.ca).toBe(false);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.serialNumber.toLowerCase()).toBe(issued.serial);
    expect(cert.keyUsage).toEqual(expect.arrayContaining(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']));
    // OpenSSL reads it whole: key usage critical, SKI of this key, AKI of the CA.
    const text = execFileSync('openssl', ['x509', '-noout', '-text'], { input: issued.certPem, encoding: 'utf8' });
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature\n/);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    const ski = /Subject Key Identifier:\s+([0-9A-F:]+)/.exec(text)?.[1];
    const csrSki = /Subject Key Identifier:\s+([0-9A-F:]+)/.exec(execFileSync('openssl', ['x509', '-noout', '-text'], { input: selfSigned(keyPem), encoding: 'utf8' }))?.[1];
    expect(ski).toBe(csrSki);
    expect(text).toContain(`Authority Key Identifier: \n                ${ca.id.toUpperCase().replace(/(..)(?!$)/g, '$1:')}`);
  });

  it.each([
    ['RSA 1024', { modulusLength: 1024 }, 'rsa', /RSA of 1024 bits/],
    ['ECDSA P-521', { namedCurve: 'P-521' }, 'ec', /EC on secp521r1/],
    ['ECDSA secp256k1', { namedCurve: 'secp256k1' }, 'ec', /EC on secp256k1/],
    ['Ed25519', {}, 'ed25519', /ed25519/],
  ] as const)('refuses a CSR for a %s key, naming the keys it accepts', (_name, opts, type, what) => {
    const { csrPem } = opensslCsr(opts, type, type === 'ec' ? '-sha256' : '-sha256');
    expect(() => ca.issueSvid(csrPem, ID, 60_000)).toThrow(/ECDSA P-256, ECDSA P-384 or RSA of at least 2048 bits/);
    expect(() => ca.verifyCsr(csrPem)).toThrow(what);
  });

  it('refuses an ECDSA CSR whose signature does not verify, or whose algorithm is not the key\'s', () => {
    const { csrPem } = opensslCsr({ namedCurve: 'P-256' }, 'ec');
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const at = der.indexOf('gopher');
    der[at] = 'h'.charCodeAt(0); // the signed subject
    const pem = (b: Buffer): string => `-----BEGIN CERTIFICATE REQUEST-----\n${b.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    expect(() => ca.verifyCsr(pem(der))).toThrow(/signature does not verify/);
    der[at] = 'g'.charCodeAt(0);
    expect(() => ca.verifyCsr(pem(der))).not.toThrow();
    // ecdsa-with-SHA256 (2a 86 48 ce 3d 04 03 02) claimed as sha256WithRSAEncryption: refused by name, never tried.
    const oid = der.indexOf(Buffer.from([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]));
    const swapped = Buffer.concat([der.subarray(0, oid), Buffer.from([0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b]), der.subarray(oid + 10)]);
    // Two lengths grow by one byte: the AlgorithmIdentifier's and the outer SEQUENCE's (0x81 <len>: under 256 bytes).
    expect(swapped[1]).toBe(0x81);
    swapped[oid - 1] = (swapped[oid - 1] ?? 0) + 1;
    swapped[2] = (swapped[2] ?? 0) + 1;
    expect(() => ca.verifyCsr(pem(swapped))).toThrow(/signature algorithm 1.2.840.113549.1.1.11 is not one accepted for ECDSA P-256/);
  });

  it('gives every certificate a distinct positive serial', () => {
    const { csrPem } = makeCsr();
    const serials = new Set([0, 1, 2].map(() => ca.issueSvid(csrPem, ID, 60_000).serial));
    expect(serials.size).toBe(3);
    for (const s of serials) expect(s).toMatch(/^[0-9a-f]{30,32}$/);
  });

  it('refuses a CSR whose signature does not verify', () => {
    const { csrPem } = makeCsr();
    // Flip the last byte of the DER: it lies in the signature, which then no longer matches.
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 1] = (der[der.length - 1] ?? 0) ^ 0xff;
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    expect(() => ca.issueSvid(tampered, ID, 60_000)).toThrow(/signature does not verify/);
    expect(() => ca.issueSvid('not a csr', ID, 60_000)).toThrow(/not a PEM PKCS#10 request \(ECDSA P-256, ECDSA P-384 or RSA of at least 2048 bits\)/);
  });

  it('refuses an identity of another trust domain', () => {
    expect(() => ca.issueSvid(makeCsr().csrPem, 'spiffe://evil.test/ns/a/sa/b', 60_000)).toThrow(/not in trust domain/);
  });

  it('issues its own serving certificate with the SPIFFE ID, localhost and 127.0.0.1', () => {
    const serving = ca.issueServingCertificate(`spiffe://${TD}/ns/airlock-system/sa/airlock-control-plane`, 3_600_000);
    const cert = new X509Certificate(serving.certPem);
    expect(cert.subjectAltName).toContain(`URI:spiffe://${TD}/ns/airlock-system/sa/airlock-control-plane`);
    expect(cert.subjectAltName).toContain('DNS:localhost');
    expect(cert.subjectAltName).toContain('IP Address:127.0.0.1');
    expect(cert.checkHost('localhost')).toBe('localhost');
    expect(cert.verify(ca.publicKey)).toBe(true);
  });

  it('adds serverDnsNames to the serving certificate, so the API server can verify the webhook by its Service name', () => {
    const svc = 'airlock-control-plane.airlock-system.svc';
    const serving = ca.issueServingCertificate(`spiffe://${TD}/ns/airlock-system/sa/airlock-control-plane`, 3_600_000, [svc, 'localhost']);
    const cert = new X509Certificate(serving.certPem);
    expect(cert.checkHost(svc)).toBe(svc);
    expect(cert.checkHost('localhost')).toBe('localhost');
    expect(cert.checkHost('other.airlock-system.svc')).toBeUndefined();
    expect(cert.subjectAltName?.match(/DNS:localhost/g)).toHaveLength(1);
  });
});


/** A self-signed certificate of `keyPem` by OpenSSL: its SKI is how OpenSSL identifies that key. */
function selfSigned(keyPem: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-ski-'));
  try {
    writeFileSync(join(dir, 'key.pem'), keyPem, { mode: 0o600 });
    return execFileSync('openssl', ['req', '-new', '-x509', '-key', join(dir, 'key.pem'), '-subj', '/CN=ski', '-days', '1'], { encoding: 'utf8' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
