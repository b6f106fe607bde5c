import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';

/**
 * The key-encryption key (KEK) that seals the CA ring's private keys in the store, so that every
 * replica can issue from the ring and the store alone never yields a key: AES-256-GCM, the root's id
 * bound as associated data (a sealed key moved to another root's record does not open).
 */
export interface KeyEncryptionKey {
  readonly key: Buffer;
}

const SEALED = /^v1:([A-Za-z0-9+/]{16}):([A-Za-z0-9+/=]{24}):([A-Za-z0-9+/=]+)$/;

/** A file holding 32 random bytes, base64 (`head -c 32 /dev/urandom | base64`), as a Kubernetes Secret mounts it. */
export function loadKeyEncryptionKey(path: string): KeyEncryptionKey {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new AirlockError(ErrorCode.Config, `caKeyEncryptionKeyFile: cannot read ${path}: ${errorMessage(err)}`);
  }
  const key = /^[A-Za-z0-9+/]{43}=$/.test(text) ? Buffer.from(text, 'base64') : undefined;
  if (key?.length !== 32) throw new AirlockError(ErrorCode.Config, `caKeyEncryptionKeyFile: ${path} must hold 32 random bytes in base64 (head -c 32 /dev/urandom | base64)`);
  return { key };
}

export function sealKey(kek: KeyEncryptionKey, rootId: string, keyPem: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', kek.key, iv);
  cipher.setAAD(Buffer.from(rootId));
  const sealed = Buffer.concat([cipher.update(keyPem, 'utf8'), cipher.final()]);
  return `v1:${iv.toString('base64')}:${cipher.getAuthTag().toString('base64')}:${sealed.toString('base64')}`;
}

export function openKey(kek: KeyEncryptionKey, rootId: string, sealed: string): string {
  const m = SEALED.exec(sealed);
  if (m === null) throw new AirlockError(ErrorCode.Config, `the key of root ${rootId} in the store is not a sealed key`);
  try {
    const decipher = createDecipheriv('aes-256-gcm', kek.key, Buffer.from(m[1] ?? '', 'base64'));
    decipher.setAAD(Buffer.from(rootId));
    decipher.setAuthTag(Buffer.from(m[2] ?? '', 'base64'));
    return Buffer.concat([decipher.update(Buffer.from(m[3] ?? '', 'base64')), decipher.final()]).toString('utf8');
  } catch {
    throw new AirlockError(ErrorCode.Config, `cannot open the key of root ${rootId}: the store's CA keys were sealed with another caKeyEncryptionKeyFile`);
  }
}
