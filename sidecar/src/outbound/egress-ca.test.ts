import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '@airlock/common/errors';
import { EgressCa } from './egress-ca.ts';

const HOUR = 3_600_000;

describe('EgressCa', () => {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-egress-ca-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes only its certificate (ECDSA P-256, a CA for leaves only), readable by the agent; the key stays in memory', async () => {
    const file = join(dir, 'egress-ca.pem');
    const ca = await EgressCa.create({ certFile: file });
    const text = readFileSync(file, 'utf8');
    expect(text).toBe(ca.certPem);
    expect(text).not.toMatch(/PRIVATE KEY/);
    expect(statSync(file).mode & 0o777).toBe(0o644);
    const cert = new X509Certificate(text);
    expect(cert.ca).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(cert.verify(cert.publicKey)).toBe(true);
    // A second sidecar start is a new CA.
    expect((await EgressCa.create({ certFile: file })).certPem).not.toBe(text);
  });

  it('writes egressCaBundleFile as the CA followed by the roots, so a client whose roots it replaces still trusts them', async () => {
    const bundle = join(dir, 'ca-bundle.pem');
    const roots = rootCertificates.slice(0, 3).join('\n');
    const ca = await EgressCa.create({ bundleFile: bundle, roots });
    const written = readFileSync(bundle, 'utf8');
    const certs = written.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    expect(certs).toHaveLength(4);
    expect(new X509Certificate(certs[0] ?? '').fingerprint256).toBe(new X509Certificate(ca.certPem).fingerprint256);
    expect(certs.slice(1).map((c) => new X509Certificate(c).fingerprint256)).toEqual(rootCertificates.slice(0, 3).map((c) => new X509Certificate(c).fingerprint256));
    await expect(EgressCa.create({ bundleFile: join(dir, 'missing', 'b.pem'), roots })).rejects.toThrow(/egressCaBundleFile: cannot write/);
  });

  it('an unwritable egressCaFile is a config error naming the setting', async () => {
    await expect(EgressCa.create({ certFile: join(dir, 'missing', 'ca.pem') })).rejects.toThrow(ConfigError);
    await expect(EgressCa.create({ certFile: join(dir, 'missing', 'ca.pem') })).rejects.toThrow(/egressCaFile: cannot write/);
  });

  it('mints a short-lived server leaf for the name (or IP) it is asked for, signed by the CA', async () => {
    const ca = await EgressCa.create();
    const root = new X509Certificate(ca.certPem);
    const leaf = new X509Certificate(ca.leafPem('api.example.com'));
    expect(leaf.ca).toBe(false);
    expect(leaf.subjectAltName).toBe('DNS:api.example.com');
    expect(leaf.checkHost('api.example.com')).toBe('api.example.com');
    expect(leaf.checkHost('other.example.com')).toBeUndefined();
    expect(leaf.checkIssued(root) && leaf.verify(root.publicKey)).toBe(true);
    expect(leaf.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(Date.parse(leaf.validTo) - Date.now()).toBeLessThanOrEqual(24 * HOUR);
    const ip = new X509Certificate(ca.leafPem('10.0.0.7'));
    expect(ip.subjectAltName).toBe('IP Address:10.0.0.7');
    expect(ip.checkIP('10.0.0.7')).toBe('10.0.0.7');
  });

  it('caches leaves (bounded, least recently used dropped) and mints again one near its end', async () => {
    let now = Date.now();
    let minted = 0;
    const ca = await EgressCa.create({ cacheSize: 2, now: () => now, minted: { inc: () => { minted++; } } });
    const a = ca.leafPem('a.example.com');
    ca.leafPem('b.example.com');
    expect(ca.leafPem('a.example.com')).toBe(a);
    expect(minted).toBe(2);
    ca.leafPem('c.example.com'); // drops b, the least recently used
    expect(ca.leafPem('a.example.com')).toBe(a);
    expect(minted).toBe(3);
    const b = ca.leafPem('b.example.com');
    expect(minted).toBe(4);
    now += 22.5 * HOUR;
    expect(ca.leafPem('b.example.com')).toBe(b);
    // Within its last hour a leaf is minted again.
    now += HOUR;
    expect(ca.leafPem('b.example.com')).not.toBe(b);
    expect(minted).toBe(5);
  });
});
