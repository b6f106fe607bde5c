import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { loadKeyEncryptionKey, openKey, sealKey } from './key-encryption.ts';

describe('the key-encryption key of the CA ring', () => {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-kek-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const kekFile = (text: string): string => {
    const path = join(dir, `kek-${Math.random()}`);
    writeFileSync(path, text);
    return path;
  };

  it('seals a key that only the same KEK opens, and only for the same root', () => {
    const kek = loadKeyEncryptionKey(kekFile(`${randomBytes(32).toString('base64')}\n`));
    const sealed = sealKey(kek, 'root1', '-----BEGIN PRIVATE KEY-----\nabc\n');
    expect(sealed).not.toContain('abc');
    expect(openKey(kek, 'root1', sealed)).toBe('-----BEGIN PRIVATE KEY-----\nabc\n');
    expect(() => openKey(kek, 'root2', sealed)).toThrow(/sealed with another caKeyEncryptionKeyFile/);
    const other = loadKeyEncryptionKey(kekFile(randomBytes(32).toString('base64')));
    expect(() => openKey(other, 'root1', sealed)).toThrow(/sealed with another caKeyEncryptionKeyFile/);
    const tampered = sealed.slice(0, -4) + (sealed.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    expect(() => openKey(kek, 'root1', tampered)).toThrow(/cannot open the key of root root1/);
    expect(() => openKey(kek, 'root1', 'plain')).toThrow(/not a sealed key/);
  });

  it.each([
    ['too short', randomBytes(16).toString('base64')],
    ['not base64', 'x'.repeat(44)],
    ['hex', randomBytes(32).toString('hex')],
  ])('refuses a KEK file that is %s', (_what, text) => {
    expect(() => loadKeyEncryptionKey(kekFile(text))).toThrow(/must hold 32 random bytes in base64/);
  });

  it('says which file it cannot read', () => {
    expect(() => loadKeyEncryptionKey(join(dir, 'missing'))).toThrow(/caKeyEncryptionKeyFile: cannot read .*missing/);
  });
});
