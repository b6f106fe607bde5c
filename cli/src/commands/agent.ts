import { parseSpiffeId } from '@airlock/common/spiffe';
import { parseFlags, UsageError } from '../args.ts';
import { resolveCredentials } from '../credentials.ts';
import { adminPost } from '../admin-client.ts';

const HELP = `Usage: airlock agent revoke spiffe://<td>/ns/<ns>/sa/<sa> [-o text|json] [--server URL] [--credentials FILE]

Revokes an agent identity at once: its certificate renewals are refused, every authorization
naming it (as source or destination) is denied from the next call, and every sidecar refuses
handshakes presenting its certificates within seconds. Revoking twice is harmless.

Credentials: --credentials / AIRLOCK_CREDENTIALS, else .airlock/credentials.json found from the
working directory upward (the demo writes it). --server / AIRLOCK_SERVER overrides the server URL.`;

interface Revoked {
  identity: string;
  revokedAt: string;
  alreadyRevoked: boolean;
  revokedSerials: string[];
}

export async function runAgent(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    help: { type: 'boolean', short: 'h' },
    output: { type: 'string', short: 'o' },
    server: { type: 'string' },
    credentials: { type: 'string' },
  });
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  const [verb, identity, ...extra] = positionals;
  if (verb !== 'revoke' || identity === undefined || extra.length > 0) throw new UsageError('expected `airlock agent revoke <spiffe-id>`');
  parseSpiffeId(identity);
  const output = values.output ?? 'text';
  if (output !== 'text' && output !== 'json') throw new UsageError(`-o must be text or json, got "${String(output)}"`);
  const creds = resolveCredentials({
    env: process.env,
    cwd: process.cwd(),
    ...(typeof values.credentials === 'string' ? { credentials: values.credentials } : {}),
    ...(typeof values.server === 'string' ? { server: values.server } : {}),
  });
  const revoked = (await adminPost(creds, '/v1/agents/revoke', { identity })) as Revoked;
  if (output === 'json') console.log(JSON.stringify(revoked));
  else {
    const what = revoked.alreadyRevoked ? 'already revoked' : 'revoked';
    console.log(`${revoked.identity} ${what} (since ${revoked.revokedAt}); ${revoked.revokedSerials.length} unexpired certificate(s) refused by every sidecar`);
  }
  return 0;
}
