import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';

/** What the CLI needs to talk to a control plane's admin API. */
export interface AdminCredentials {
  /** Base URL of the admin API, e.g. https://127.0.0.1:15013 */
  readonly server: string;
  readonly token: string;
  /**
   * PEM file the admin API's certificate must chain to: the control plane's trust bundle (read at
   * each request: the control plane keeps `<dataDir>/trust-bundle.pem` current through a root
   * rollover). With it, the server is recognized by its SPIFFE ID (`serverId`), not its host name;
   * without it, by the system's CAs and its host name (e.g. behind a proxy with a public certificate).
   */
  readonly caFile?: string;
  /** The SPIFFE ID the admin API must present; default: the control plane's, spiffe://<td>/ns/airlock-system/sa/airlock-control-plane. */
  readonly serverId?: string;
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

/** `{server, token, caFile?, serverId?}`; a relative caFile is taken from the credentials file's directory. */
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
  for (const key of ['caFile', 'serverId'] as const) {
    if (c[key] !== undefined && typeof c[key] !== 'string') throw new AirlockError(ErrorCode.Config, `credentials ${path}: "${key}" must be a string`);
  }
  const caFile = typeof c.caFile === 'string' ? resolve(dirname(path), c.caFile) : undefined;
  return {
    server: c.server,
    token: c.token,
    ...(caFile === undefined ? {} : { caFile }),
    ...(typeof c.serverId === 'string' ? { serverId: c.serverId } : {}),
  };
}

/**
 * Resolves credentials: --credentials / AIRLOCK_CREDENTIALS, else the demo's file found upward from
 * the working directory; --server / AIRLOCK_SERVER overrides the server, --ca-file / AIRLOCK_CA_FILE its CA.
 */
export function resolveCredentials(o: { credentials?: string; server?: string; caFile?: string; env: NodeJS.ProcessEnv; cwd: string }): AdminCredentials {
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
  const given = o.caFile ?? fromEnv('AIRLOCK_CA_FILE');
  const caFile = given === undefined ? creds.caFile : resolve(o.cwd, given);
  return { server, token: creds.token, ...(caFile === undefined ? {} : { caFile }), ...(creds.serverId === undefined ? {} : { serverId: creds.serverId }) };
}
