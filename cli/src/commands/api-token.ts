import { adminPost } from '../admin-client.ts';
import { parseFlags, UsageError } from '../args.ts';
import { resolveCredentials } from '../credentials.ts';

const HELP = `Usage: airlock api-token create --name NAME --role viewer|editor|responder|admin [-o text|json]
                                [--server URL] [--credentials FILE]

Creates a named bearer token for the admin API (admin only); only its hash is stored. Roles: viewer
reads; editor also changes policy; responder also takes incident actions; admin does everything.
Prints the token once on stdout.`;

export async function runApiToken(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    help: { type: 'boolean', short: 'h' },
    name: { type: 'string' },
    role: { type: 'string' },
    output: { type: 'string', short: 'o' },
    server: { type: 'string' },
    credentials: { type: 'string' },
  });
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  if (positionals[0] !== 'create' || positionals.length > 1) throw new UsageError('expected `airlock api-token create --name NAME --role ROLE`');
  if (typeof values.name !== 'string' || typeof values.role !== 'string') throw new UsageError('--name and --role are required');
  const output = values.output ?? 'text';
  if (output !== 'text' && output !== 'json') throw new UsageError(`-o must be text or json, got "${String(output)}"`);
  const creds = resolveCredentials({
    env: process.env,
    cwd: process.cwd(),
    ...(typeof values.credentials === 'string' ? { credentials: values.credentials } : {}),
    ...(typeof values.server === 'string' ? { server: values.server } : {}),
  });
  const created = (await adminPost(creds, '/v1/api-tokens', { name: values.name, role: values.role })) as { name: string; role: string; token: string };
  if (output === 'json') console.log(JSON.stringify(created));
  else {
    console.log(created.token);
    console.error(`name: ${created.name}\nrole: ${created.role}`);
  }
  return 0;
}
