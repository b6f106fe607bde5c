import { adminPost } from '../admin-client.ts';
import { UsageError } from '../args.ts';
import { credentialsOf, outputOf, parseAdminFlags, print } from '../admin-command.ts';

const HELP = `Usage: airlock api-token create --name NAME --role viewer|editor|responder|admin [-o table|json|yaml]
                                [--server URL] [--credentials FILE]

Creates a named bearer token for the admin API (admin only); only its hash is stored. Roles: viewer
reads; editor also changes policy; responder also takes incident actions; admin does everything.
Prints the token once on stdout.`;

export async function runApiToken(argv: string[]): Promise<number> {
  const { values, positionals } = parseAdminFlags(argv, {
    name: { type: 'string' },
    role: { type: 'string' },
  });
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  if (positionals[0] !== 'create' || positionals.length > 1) throw new UsageError('expected `airlock api-token create --name NAME --role ROLE`');
  if (typeof values.name !== 'string' || typeof values.role !== 'string') throw new UsageError('--name and --role are required');
  const output = outputOf(values.output);
  const creds = credentialsOf(values);
  const created = (await adminPost(creds, '/v1/api-tokens', { name: values.name, role: values.role })) as { name: string; role: string; token: string };
  if (output !== 'table') print(output, created, () => '');
  else {
    console.log(created.token);
    console.error(`name: ${created.name}\nrole: ${created.role}`);
  }
  return 0;
}
