import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';

/** What the CLI needs to talk to a control plane's admin API. */
export interface AdminCredentials {
  /** Base URL of the admin HTTP API, e.g. http://127.0.0.1:15014 */
  readonly server: string;
  readonly token: string;
}

export const DEMO_CREDENTIALS = join('.airlock', 'credentials.json');

/** Finds `.airlock/credentials.json` in the working directory or any parent (like git finds .git). */
export function findCredentialsFile(from: string): string | undefined {
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    const candidate = join(dir, DEMO_CREDENTIALS);
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}

export function readCredentialsFile(path: string): AdminCredentials {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new AirlockError(ErrorCode.Config, `cannot read credentials ${path}: ${errorMessage(err)}`);
  }
  const c = parsed as Partial<Record<string, unknown>>;
  if (typeof c.server !== 'string' || typeof c.token !== 'string') {
    throw new AirlockError(ErrorCode.Config, `credentials ${path} must be JSON with string fields "server" and "token"`);
  }
  return { server: c.server, token: c.token };
}

/**
 * Resolves credentials: --credentials / AIRLOCK_CREDENTIALS, else the demo's file found upward from
 * the working directory; --server / AIRLOCK_SERVER overrides the server.
 */
export function resolveCredentials(o: { credentials?: string; server?: string; env: NodeJS.ProcessEnv; cwd: string }): AdminCredentials {
  const fromEnv = (name: string): string | undefined => (o.env[name] === '' ? undefined : o.env[name]);
  const path = o.credentials ?? fromEnv('AIRLOCK_CREDENTIALS') ?? findCredentialsFile(o.cwd);
  if (path === undefined) {
    throw new AirlockError(
      ErrorCode.Config,
      'no admin credentials: pass --credentials FILE (or set AIRLOCK_CREDENTIALS), or run from a directory where `npm start` (the demo) is running',
    );
  }
  const creds = readCredentialsFile(path);
  const server = o.server ?? fromEnv('AIRLOCK_SERVER') ?? creds.server;
  return { server, token: creds.token };
}
