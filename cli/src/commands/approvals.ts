import { UsageError } from '../args.ts';
import { ADMIN_COMMAND_HELP, credentialsOf, formatTable, outputOf, parseAdminFlags, print } from '../admin-command.ts';
import { adminGet, adminPost } from '../admin-client.ts';

const HELP = `Usage: airlock approvals list [-o table|json|yaml]
       airlock approvals approve ID [-o table|json|yaml]
       airlock approvals deny ID [--reason TEXT] [-o table|json|yaml]

Decides MCP tool calls held by a rule with \`approve: required\` (role responder, or admin when the
rule says \`approver: admin\`). \`list\` shows each held call exactly: source, destination, tool and
its arguments. An approval releases that one call only; a denied call, or one not decided within the
rule's approvalTimeout, gets a JSON-RPC error (approval_denied, approval_timeout). Every decision is
audited with who made it.

${ADMIN_COMMAND_HELP}`;

interface Approval {
  id: string;
  state: string;
  source: string;
  destination: string;
  tool: string;
  arguments: string;
  expiresAt: string;
  approver: string;
  decidedBy?: string;
  reason?: string;
}

export async function runApprovals(argv: string[]): Promise<number> {
  const { values, positionals } = parseAdminFlags(argv, { reason: { type: 'string' } });
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  const output = outputOf(values.output);
  const [action, id, ...extra] = positionals;
  if (action === 'list') {
    if (id !== undefined || values.reason !== undefined) throw new UsageError('expected `airlock approvals list`');
    const { items } = (await adminGet(credentialsOf(values), '/v1/approvals')) as { items: Approval[] };
    print(output, items, () => (items.length === 0 ? 'no call is waiting for an approval' : formatTable(['ID', 'SOURCE', 'DESTINATION', 'TOOL', 'ARGUMENTS', 'EXPIRES', 'APPROVER'], items.map((a) => [a.id, a.source, a.destination, a.tool, a.arguments, a.expiresAt, a.approver]))));
    return 0;
  }
  if ((action !== 'approve' && action !== 'deny') || id === undefined || extra.length > 0) throw new UsageError('expected `airlock approvals list`, `airlock approvals approve ID` or `airlock approvals deny ID [--reason TEXT]`');
  if (action === 'approve' && values.reason !== undefined) throw new UsageError('--reason goes with `airlock approvals deny`');
  const body = action === 'approve' ? { id } : { id, ...(typeof values.reason === 'string' ? { reason: values.reason } : {}) };
  const a = (await adminPost(credentialsOf(values), `/v1/approvals/${action}`, body)) as Approval;
  print(output, a, () => `${a.id} ${a.state} by ${a.decidedBy ?? '?'}: ${a.tool} from ${a.source} to ${a.destination}`);
  return 0;
}
