import { UsageError } from '../args.ts';
import { ADMIN_COMMAND_HELP, credentialsOf, formatTable, outputOf, parseAdminFlags, print } from '../admin-command.ts';
import { adminGet } from '../admin-client.ts';

const HELP = `Usage: airlock incident list [-o table|json|yaml]
       airlock incident show ID [-o table|json|yaml]

Incident records (role responder): one per quarantine, opened by \`airlock quarantine\` and closed by
\`airlock release\`. Each keeps who set it and when, why, what it contained (the identity, segment or
selector, and the agents it matched), its end, and the decisions naming those agents just before it
was set and while it held (the last ones the answering control-plane replica decided; bounded).

${ADMIN_COMMAND_HELP}`;

interface IncidentDecision {
  at: string;
  direction: string;
  source: string;
  destination: string;
  host: string;
  method: string;
  path: string;
  mcpTool?: string;
  verdict: string;
  reason: string;
}

interface Incident {
  id: string;
  identity?: string;
  segment?: string;
  selector?: string;
  state: string;
  reason: string;
  openedBy: string;
  openedAt: string;
  until?: string;
  releasedAt?: string;
  releasedBy?: string;
  matched: string[];
  matchedTotal: number;
  before?: IncidentDecision[];
  after?: IncidentDecision[];
}

const contains = (r: Incident): string => r.identity ?? (r.segment !== undefined ? `segment ${r.segment}` : `selector ${r.selector ?? ''}`);

function decisionsTable(title: string, list: readonly IncidentDecision[]): string {
  if (list.length === 0) return `${title}: none`;
  const rows = list.map((d) => [d.at, d.verdict, d.source, d.destination === '' ? d.host : d.destination, `${d.method} ${d.path}${d.mcpTool === undefined ? '' : ` (${d.mcpTool})`}`, d.reason]);
  return `${title}:\n${formatTable(['AT', 'VERDICT', 'SOURCE', 'DESTINATION', 'CALL', 'REASON'], rows)}`;
}

export async function runIncident(argv: string[]): Promise<number> {
  const { values, positionals } = parseAdminFlags(argv);
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  const output = outputOf(values.output);
  const [sub, ...rest] = positionals;
  if (sub === 'list') {
    if (rest.length > 0) throw new UsageError('`airlock incident list` takes no argument');
    const { items } = (await adminGet(credentialsOf(values), '/v1/incidents')) as { items: Incident[] };
    print(output, items, () =>
      items.length === 0 ? 'no incident recorded' : formatTable(['ID', 'STATE', 'CONTAINS', 'MATCHED', 'OPENED', 'BY', 'REASON'], items.map((r) => [r.id, r.state, contains(r), String(r.matchedTotal), r.openedAt, r.openedBy, r.reason])),
    );
    return 0;
  }
  if (sub === 'show') {
    const [id, ...extra] = rest;
    if (id === undefined || extra.length > 0) throw new UsageError('expected `airlock incident show ID` (the ids: `airlock incident list`)');
    const r = (await adminGet(credentialsOf(values), `/v1/incidents/${encodeURIComponent(id)}`)) as Incident;
    print(output, r, () =>
      [
        `incident ${r.id} (${r.state})`,
        `contains:  ${contains(r)}`,
        `reason:    ${r.reason}`,
        `opened:    ${r.openedAt} by ${r.openedBy}${r.until === undefined ? '' : `, until ${r.until}`}`,
        `released:  ${r.releasedAt === undefined ? '-' : `${r.releasedAt} by ${r.releasedBy ?? ''}`}`,
        `matched:   ${r.matched.length === 0 ? 'no registered agent' : r.matched.join(', ')}${r.matchedTotal > r.matched.length ? ` (and ${r.matchedTotal - r.matched.length} more)` : ''}`,
        decisionsTable('decisions before', r.before ?? []),
        decisionsTable('decisions after', r.after ?? []),
      ].join('\n'),
    );
    return 0;
  }
  throw new UsageError('expected `airlock incident list` or `airlock incident show ID`');
}
