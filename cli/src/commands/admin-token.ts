import { adminPost } from '../admin-client.ts';
import { UsageError } from '../args.ts';
import { credentialsOf, outputOf, parseAdminFlags, print } from '../admin-command.ts';

const HELP = `Usage: airlock admin-token retire [-o table|json|yaml] [--server URL] [--credentials FILE]

retire: every admin token (<dataDir>/admin-token of each replica, the bootstrap credential) stops
authenticating anyone, for good, on every replica; a replica started later registers none. Run it
with the API token or admin certificate (role admin) that replaces them: called with an admin token
it is refused, so that no one is locked out. Audited.`;

export async function runAdminToken(argv: string[]): Promise<number> {
  const { values, positionals } = parseAdminFlags(argv, {});
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  const output = outputOf(values.output);
  if (positionals.length !== 1 || positionals[0] !== 'retire') throw new UsageError('expected `airlock admin-token retire`');
  const r = (await adminPost(credentialsOf(values), '/v1/admin-tokens/retire', {})) as { retired: number; retiredAt: string; alreadyRetired: boolean };
  print(output, r, () => (r.alreadyRetired ? `admin tokens were already retired (${r.retiredAt})` : `${r.retired} admin token${r.retired === 1 ? '' : 's'} retired: they authenticate no one from now on`));
  return 0;
}
