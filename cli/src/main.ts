import { isAirlockError, errorMessage, ErrorCode } from '@airlock/common/errors';
import { UsageError } from './args.ts';

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
  quarantine ID   contain an agent from its next call, reversibly (--reason TEXT [--ttl 1h]; list) (responder)
                  or a segment's members or a label's agents (--segment NAME | --selector KEY=VALUE)
  release ID      end a quarantine (the same ID, --segment or --selector) (responder)
  incident list   incident records of quarantines; incident show ID: what was contained and its decisions (responder)
  tools list      the pinned MCP tools and those that changed or were flagged (viewer); tools accept SERVER TOOL (responder)
  baselines       learned behaviour per agent (list [--identity ID], viewer); reset ID; accept ID --flow F (responder)
  approvals       decide MCP tool calls held for a human approval (list; approve ID; deny ID [--reason]) (responder)
  apply -f F|DIR  add or replace segments and policies, as a new policy version
  diff -f F|DIR   what apply would change
  get KIND [NAME] segments | policies | agents | threat-feeds (loaded copy, bad entries, age, last error)
  delete KIND N   delete a segment, policy or threat-feed
  history         the policy versions
  rollback --to N make version N current again
  explain         the decision for a call, without traffic (--from ID --to HOST[:PORT] --method M --path P)
  validate -f F   check policy documents offline
  api-token create  create a role-bound admin API token (admin)
  admin-cert create an admin client certificate for the gRPC AdminService (admin)
  admin-token retire  retire the bootstrap admin tokens of every replica, for good (admin)
  audit verify F  check the audit trail's hash chains and signed checkpoints in control plane logs
  export          the audit events naming an identity in a time window, as JSON lines (--identity ID --since T FILE...)
  report          the evidence summary of audit logs over a time window (--since T [-o json] FILE...)
  version         print the version

Run \`airlock <command> --help\` for the flags of a command.
Exit codes: 0 ok, 1 runtime failure or refused, 2 bad usage, configuration or policy, 3 diff found changes.`;

type Command = (argv: string[]) => Promise<number>;

// Each command's modules are imported when it runs: a sidecar process must not hold the control
// plane's code (policy engine, store, CA) in its heap.
const commands: Record<string, Command> = {
  demo: async (argv) => (await import('./commands/demo.ts')).runDemo(argv),
  'control-plane': async (argv) => (await import('./commands/control-plane.ts')).runControlPlane(argv),
  sidecar: async (argv) => (await import('./commands/sidecar.ts')).runSidecar(argv),
  token: async (argv) => (await import('./commands/token.ts')).runToken(argv),
  'api-token': async (argv) => (await import('./commands/api-token.ts')).runApiToken(argv),
  'admin-cert': async (argv) => (await import('./commands/admin-cert.ts')).runAdminCert(argv),
  'admin-token': async (argv) => (await import('./commands/admin-token.ts')).runAdminToken(argv),
  apply: async (argv) => (await import('./commands/policy.ts')).runApply(argv),
  diff: async (argv) => (await import('./commands/policy.ts')).runDiff(argv),
  get: async (argv) => (await import('./commands/policy.ts')).runGet(argv),
  delete: async (argv) => (await import('./commands/policy.ts')).runDelete(argv),
  history: async (argv) => (await import('./commands/policy.ts')).runHistory(argv),
  rollback: async (argv) => (await import('./commands/policy.ts')).runRollback(argv),
  explain: async (argv) => (await import('./commands/policy.ts')).runExplain(argv),
  validate: async (argv) => (await import('./commands/policy.ts')).runValidate(argv),
  agent: async (argv) => (await import('./commands/agent.ts')).runAgent(argv),
  quarantine: async (argv) => (await import('./commands/quarantine.ts')).runQuarantine(argv),
  release: async (argv) => (await import('./commands/quarantine.ts')).runRelease(argv),
  tools: async (argv) => (await import('./commands/tools.ts')).runTools(argv),
  incident: async (argv) => (await import('./commands/incident.ts')).runIncident(argv),
  approvals: async (argv) => (await import('./commands/approvals.ts')).runApprovals(argv),
  baselines: async (argv) => (await import('./commands/baselines.ts')).runBaselines(argv),
  ca: async (argv) => (await import('./commands/ca.ts')).runCa(argv),
  audit: async (argv) => (await import('./commands/audit.ts')).runAudit(argv),
  export: async (argv) => (await import('./commands/export.ts')).runExport(argv),
  report: async (argv) => (await import('./commands/report.ts')).runReport(argv),
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
    // Bad input (settings, a policy, a request, a policy over a size limit) is 2; anything else 1.
    process.exitCode = err.code === ErrorCode.Config || err.code === ErrorCode.Policy || err.code === ErrorCode.BadRequest || err.code === ErrorCode.TooLarge ? 2 : 1;
  } else {
    console.error(`airlock: unexpected error: ${errorMessage(err)}`);
    if (process.env.AIRLOCK_DEBUG !== undefined) console.error(err);
    process.exitCode = 1;
  }
}
