import { adminGet, adminPost } from '../admin-client.ts';
import { UsageError } from '../args.ts';
import { credentialsOf, formatTable, outputOf, parseAdminFlags, print } from '../admin-command.ts';

const HELP = `Usage: airlock api-token create --name NAME --role viewer|editor|responder|admin [-o table|json|yaml]
       airlock api-token list [-o table|json|yaml]
       airlock api-token revoke NAME [-o table|json|yaml]
                                [--server URL] [--credentials FILE]

create: a named bearer token for the admin API (admin only); only its hash is stored. Roles: viewer
reads; editor also changes policy; responder also takes incident actions; admin does everything.
Prints the token once on stdout.
list: every API token by name, its role, when it was made and when revoked (never the token).
revoke: from now on the token authenticates no one, on every replica; its name stays taken.`;

interface Listed {
  readonly name: string;
  readonly role: string;
  readonly createdAt: string;
  readonly revokedAt?: string;
}

export async function runApiToken(argv: string[]): Promise<number> {
  const { values, positionals } = parseAdminFlags(argv, {
    name: { type: 'string' },
    role: { type: 'string' },
  });
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  const output = outputOf(values.output);
  const [verb, ...rest] = positionals;
  if (verb === 'list' && rest.length === 0) {
    const { items } = (await adminGet(credentialsOf(values), '/v1/api-tokens')) as { items: Listed[] };
    print(output, items, () => (items.length === 0 ? 'no API token' : formatTable(['NAME', 'ROLE', 'CREATED', 'REVOKED'], items.map((t) => [t.name, t.role, t.createdAt, t.revokedAt ?? '']))));
    return 0;
  }
  if (verb === 'revoke') {
    if (rest.length !== 1 || rest[0] === undefined) throw new UsageError('expected `airlock api-token revoke NAME`');
    const r = (await adminPost(credentialsOf(values), '/v1/api-tokens/revoke', { name: rest[0] })) as { name: string; revokedAt: string; alreadyRevoked: boolean };
    print(output, r, () => (r.alreadyRevoked ? `${r.name} was already revoked (${r.revokedAt})` : `${r.name} revoked: it authenticates no one from now on`));
    return 0;
  }
  if (verb !== 'create' || rest.length > 0) throw new UsageError('expected `airlock api-token create --name NAME --role ROLE`, `airlock api-token list` or `airlock api-token revoke NAME`');
  if (typeof values.name !== 'string' || typeof values.role !== 'string') throw new UsageError('--name and --role are required');
  const creds = credentialsOf(values);
  const created = (await adminPost(creds, '/v1/api-tokens', { name: values.name, role: values.role })) as { name: string; role: string; token: string };
  if (output !== 'table') print(output, created, () => '');
  else {
    console.log(created.token);
    console.error(`name: ${created.name}\nrole: ${created.role}`);
  }
  return 0;
}
