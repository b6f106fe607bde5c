import { parseSpiffeId } from '@airlock/common/spiffe';
import { duration } from '@airlock/common/config';
import { errorMessage } from '@airlock/common/errors';
import { parseFlags, UsageError } from '../args.ts';
import { resolveCredentials } from '../credentials.ts';
import { adminPost } from '../admin-client.ts';

const HELP = `Usage: airlock token create --identity spiffe://<td>/ns/<ns>/sa/<sa> [--ttl 1h] [-o text|json]
                            [--server URL] [--credentials FILE]

Creates a one-time join token bound to one SPIFFE ID. Start the sidecar with it in
AIRLOCK_JOIN_TOKEN; it is accepted once, before it expires (default 1h, at most 24h).

Credentials: --credentials / AIRLOCK_CREDENTIALS, else .airlock/credentials.json found from the
working directory upward (the demo writes it). --server / AIRLOCK_SERVER overrides the server URL.`;

interface CreatedToken {
  token: string;
  identity: string;
  expiresAt: string;
}

export async function runToken(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    help: { type: 'boolean', short: 'h' },
    identity: { type: 'string' },
    ttl: { type: 'string' },
    output: { type: 'string', short: 'o' },
    server: { type: 'string' },
    credentials: { type: 'string' },
  });
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  if (positionals[0] !== 'create' || positionals.length > 1) throw new UsageError('expected `airlock token create --identity …`');
  if (typeof values.identity !== 'string') throw new UsageError('--identity is required');
  parseSpiffeId(values.identity);
  const output = values.output ?? 'text';
  if (output !== 'text' && output !== 'json') throw new UsageError(`-o must be text or json, got "${String(output)}"`);
  let ttlMs = 3_600_000;
  if (typeof values.ttl === 'string') {
    try {
      ttlMs = duration({ description: 'ttl', minMs: 1000 }).parse(values.ttl);
    } catch (err) {
      throw new UsageError(`--ttl: ${errorMessage(err)}`);
    }
  }
  const creds = resolveCredentials({
    env: process.env,
    cwd: process.cwd(),
    ...(typeof values.credentials === 'string' ? { credentials: values.credentials } : {}),
    ...(typeof values.server === 'string' ? { server: values.server } : {}),
  });
  const created = (await adminPost(creds, '/v1/join-tokens', {
    identity: values.identity,
    ttlSeconds: Math.ceil(ttlMs / 1000),
  })) as CreatedToken;
  if (output === 'json') console.log(JSON.stringify(created));
  else {
    // Only the token on stdout, so `$(airlock token create …)` captures exactly it.
    console.log(created.token);
    console.error(`identity: ${created.identity}\nexpires:  ${created.expiresAt}\nuse once: AIRLOCK_JOIN_TOKEN=<token> airlock sidecar …`);
  }
  return 0;
}
