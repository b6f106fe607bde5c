import { createHash, randomBytes } from 'node:crypto';

/** A new secret token: 32 random bytes, base64url. */
export function newSecretToken(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Tokens are stored and looked up by their SHA-256: the database never holds a usable secret, and
 * an index lookup on a hash of a high-entropy token leaks nothing useful through timing.
 */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}
