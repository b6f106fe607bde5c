import { parseSpiffeId } from '@airlock/common/spiffe';
import { UsageError } from '../args.ts';
import { credentialsOf, outputOf, parseAdminFlags, print } from '../admin-command.ts';
import { adminPost } from '../admin-client.ts';

const HELP = `Usage: airlock agent revoke spiffe://<td>/ns/<ns>/sa/<sa> [-o table|json|yaml] [--server URL] [--credentials FILE]

Revokes an agent identity at once: its certificate renewals are refused, every authorization
naming it (as source or destination) is denied from the next call, and every sidecar refuses
handshakes presenting its certificates within seconds. Revoking twice is harmless.

Credentials: --credentials / AIRLOCK_CREDENTIALS, else .airlock/credentials.json found from the
working directory upward (the demo writes it). --server / AIRLOCK_SERVER overrides the server URL,
--ca-file / AIRLOCK_CA_FILE the CA bundle its HTTPS certificate is verified against.`;

interface Revoked {
  identity: string;
  revokedAt: string;
  alreadyRevoked: boolean;
  revokedSerials: string[];
}

export async function runAgent(argv: string[]): Promise<number> {
  const { values, positionals } = parseAdminFlags(argv);
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  const [verb, identity, ...extra] = positionals;
  if (verb !== 'revoke' || identity === undefined || extra.length > 0) throw new UsageError('expected `airlock agent revoke <spiffe-id>`');
  parseSpiffeId(identity);
  const output = outputOf(values.output);
  const creds = credentialsOf(values);
  const revoked = (await adminPost(creds, '/v1/agents/revoke', { identity })) as Revoked;
  print(output, revoked, () => {
    const what = revoked.alreadyRevoked ? 'already revoked' : 'revoked';
    return `${revoked.identity} ${what} (since ${revoked.revokedAt}); ${revoked.revokedSerials.length} unexpired certificate(s) refused by every sidecar`;
  });
  return 0;
}
