import { isAirlockError, errorMessage, ErrorCode } from '@airlock/common/errors';
import { UsageError } from './args.ts';
import { runControlPlane } from './commands/control-plane.ts';
import { runSidecar } from './commands/sidecar.ts';
import { runDemo } from './commands/demo.ts';
import { runToken } from './commands/token.ts';
import { runApiToken } from './commands/api-token.ts';
import { runAdminCert } from './commands/admin-cert.ts';
import { runApply, runDelete, runDiff, runExplain, runGet, runHistory, runRollback, runValidate } from './commands/policy.ts';
import { runAgent } from './commands/agent.ts';
import { runCa } from './commands/ca.ts';

const HELP = `airlock — zero-trust sidecar for AI-agent containers

Usage: airlock <command> [flags]

Commands:
  demo            start a local mesh on loopback: control plane + 3 echo agents behind sidecars
  control-plane   run the control plane (CA, attestation, authorization, admin API)
  sidecar         run a sidecar in front of one agent
  token create    create a one-time join token for a sidecar (admin)
  token list      the join tokens: id, identity, expiry, used or not — never the secret (admin)
  token revoke ID revoke a join token so that it can no longer attest (admin)
  ca status       the roots of the trust bundle; ca prepare|activate|retire rolls to a new root (admin)
  agent revoke    revoke an agent identity at once: no renewal, every call denied, handshakes refused (admin)
  apply -f F|DIR  add or replace segments and policies, as a new policy version
  diff -f F|DIR   what apply would change
  get KIND [NAME] segments | policies | agents
  delete KIND N   delete a segment or policy
  history         the policy versions
  rollback --to N make version N current again
  explain         the decision for a call, without traffic (--from ID --to HOST[:PORT] --method M --path P)
  validate -f F   check policy documents offline
  api-token create  create a role-bound admin API token (admin)
  admin-cert create an admin client certificate for the gRPC AdminService (admin)
  version         print the version

Run \`airlock <command> --help\` for the flags of a command.
Exit codes: 0 ok, 1 runtime failure or refused, 2 bad usage, configuration or policy, 3 diff found changes.`;

type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, Command> = {
  demo: runDemo,
  'control-plane': runControlPlane,
  sidecar: runSidecar,
  token: runToken,
  'api-token': runApiToken,
  'admin-cert': runAdminCert,
  apply: runApply,
  diff: runDiff,
  get: runGet,
  delete: runDelete,
  history: runHistory,
  rollback: runRollback,
  explain: runExplain,
  validate: runValidate,
  agent: runAgent,
  ca: runCa,
  version: () => {
    console.log('airlock 0.1.0');
    return Promise.resolve(0);
  },
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(HELP);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (command === undefined) {
    console.error(`airlock: unknown command "${name}"\n\n${HELP}`);
    return 2;
  }
  return command(rest);
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  // Known errors print their message only: a stack trace helps nobody who mistyped a flag.
  if (err instanceof UsageError) {
    console.error(`airlock: ${err.message}\nRun \`airlock ${process.argv[2] ?? ''} --help\` for usage.`);
    process.exitCode = 2;
  } else if (isAirlockError(err)) {
    console.error(`airlock: ${err.message}`);
    process.exitCode = err.code === ErrorCode.Config || err.code === ErrorCode.Policy || err.code === ErrorCode.BadRequest ? 2 : 1;
  } else {
    console.error(`airlock: unexpected error: ${errorMessage(err)}`);
    if (process.env.AIRLOCK_DEBUG !== undefined) console.error(err);
    process.exitCode = 1;
  }
}
