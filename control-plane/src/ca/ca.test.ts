import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import forge from 'node-forge';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from './ca.ts';
import { makeCsr } from './test-csr.ts';

const TD = 'airlock.test';
const ID = `spiffe://${TD}/ns/demo/sa/researcher`;

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
    expect(() => ca.issueSvid('not a csr', ID, 60_000)).toThrow(/not a PEM PKCS#10/);
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

