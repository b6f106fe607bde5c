import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import type { Store } from '../store/store.ts';
import { hashToken, newSecretToken } from './token-hash.ts';

/**
 * The admin bearer token: `<dataDir>/admin-token` (0600), created on first start. Only its hash goes
 * into the store, which is what requests are checked against; once admin tokens are retired
 * (`airlock admin-token retire`) it is not registered and authenticates no one, and `onRetired` says so.
 */
export async function ensureAdminToken(dataDir: string, store: Store, onRetired: (path: string) => void = () => undefined): Promise<string> {
  const path = join(dataDir, 'admin-token');
  if (!existsSync(path)) {
    writeFileSync(path, `${newSecretToken()}\n`, { mode: 0o600, flag: 'wx' });
    chmodSync(path, 0o600);
  }
  const token = readFileSync(path, 'utf8').trim();
  if (token.length < 16) throw new AirlockError(ErrorCode.Config, `${path} holds no usable admin token; remove it to have a new one created`);
  if (!(await store.addAdminTokenHash(hashToken(token)))) onRetired(path);
  return token;
}
