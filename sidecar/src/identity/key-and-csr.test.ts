import { execFileSync, spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { newKeyAndCsr, type KeyType } from './key-and-csr.ts';

// OpenSSL, an implementation of PKCS#10 independent of ours, checks the hand-written DER.
function openssl(csrPem: string, ...args: string[]): string {
  return execFileSync('openssl', ['req', '-noout', ...args], { input: csrPem, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}

// `openssl req -verify` may exit 0 on a bad signature: its verdict is read from what it prints.
function verifies(csrPem: string): boolean {
  const r = spawnSync('openssl', ['req', '-noout', '-verify'], { input: csrPem, encoding: 'utf8' });
  return r.status === 0 && /verify OK/.test(r.stdout + r.stderr);
}

const pem = (b: Buffer): string => `-----BEGIN CERTIFICATE REQUEST-----\n${b.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;

describe('newKeyAndCsr', () => {
  it('makes an ECDSA P-256 key by default, as go-spiffe and SPIRE do', async () => {
    const { keyPem, csrPem } = await newKeyAndCsr();
    const key = createPrivateKey(keyPem);
    expect(key.asymmetricKeyType).toBe('ec');
    expect(key.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(verifies(csrPem)).toBe(true);
    expect(openssl(csrPem, '-text')).toMatch(/Signature Algorithm: ecdsa-with-SHA256/);
  });

  it.each<KeyType>(['ecdsa-p256', 'rsa-2048'])('makes a %s PKCS#10 request for its own key that verifies', async (keyType) => {
    const { keyPem, csrPem } = await newKeyAndCsr(keyType);
    expect(verifies(csrPem)).toBe(true);
    expect(openssl(csrPem, '-subject')).toMatch(/CN\s*=\s*airlock-sidecar/);
    const ours = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'pem' }).toString();
    expect(openssl(csrPem, '-pubkey')).toContain(ours.trim());
  });

  it.each<KeyType>(['ecdsa-p256', 'rsa-2048'])('a %s request altered after signing does not verify', async (keyType) => {
    const { csrPem } = await newKeyAndCsr(keyType);
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    expect(verifies(pem(der))).toBe(true);
    const subject = der.indexOf('airlock-sidecar');
    der[subject] = 'b'.charCodeAt(0); // the signed subject
    expect(verifies(pem(der))).toBe(false);
  });
});
