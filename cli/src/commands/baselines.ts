import { parseSpiffeId } from '@airlock/common/spiffe';
import { UsageError } from '../args.ts';
import { ADMIN_COMMAND_HELP, credentialsOf, formatTable, outputOf, parseAdminFlags, print } from '../admin-command.ts';
import { adminGet, adminPost } from '../admin-client.ts';

const HELP = `Usage: airlock baselines list [--identity ID] [-o table|json|yaml]
       airlock baselines reset ID [-o table|json|yaml]
       airlock baselines accept ID --flow FLOW [-o table|json|yaml]

Behaviour baselines (README "Behaviour baselines"). For each agent a Baseline document selects, the
control plane learns the flows it uses (destination, method, path with ids collapsed to {id}, MCP
tool) and their peak call rate, for the document's learn period from the agent's first call. After
that a call on a new flow, or at more than rateFactor times a flow's peak, is an anomaly: audited,
counted, and answered by the document's response (alert, deny, quarantine).

  list     the baselines this replica holds (role viewer): each flow, learned, accepted or anomaly,
           with its calls and peak; --identity ID only that agent's
  reset    forgets what was learned of ID (role responder; audited): it learns again from its next
           call. It does not release a quarantine: \`airlock release ID\` does.
  accept   makes FLOW of ID normal, as \`list --identity ID\` shows it (role responder; audited):
           its calls raise nothing from now on. It does not release a quarantine either.

${ADMIN_COMMAND_HELP}`;

interface Flow {
  flow: string;
  state: string;
  calls: number;
  peak: number;
  lastSeen: string;
}

interface Baseline {
  identity: string;
  startedAt: string;
  windowSeconds: number;
  droppedFlows: number;
  flows: Flow[];
}

/** A SPIFFE ID checked before any request (a typo is a usage error, exit 2). */
function identityOf(value: string | undefined, usage: string): string {
  if (value === undefined) throw new UsageError(`expected a SPIFFE ID: ${usage}`);
  try {
    return parseSpiffeId(value).uri;
  } catch {
    throw new UsageError(`"${value.slice(0, 120)}" is not a SPIFFE ID (spiffe://<trust-domain>/ns/<ns>/sa/<sa>): ${usage}`);
  }
}

export async function runBaselines(argv: string[]): Promise<number> {
  const { values, positionals } = parseAdminFlags(argv, { identity: { type: 'string' }, flow: { type: 'string' } });
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  const output = outputOf(values.output);
  const [sub, ...rest] = positionals;
  if (sub === 'list') {
    if (rest.length > 0 || values.flow !== undefined) throw new UsageError('expected `airlock baselines list [--identity ID]`');
    const query = typeof values.identity === 'string' ? `?identity=${encodeURIComponent(identityOf(values.identity, 'airlock baselines list --identity ID'))}` : '';
    const { items, truncated } = (await adminGet(credentialsOf(values), `/v1/baselines${query}`)) as { items: Baseline[]; truncated: boolean };
    print(output, { items, truncated }, () => {
      if (items.length === 0) return typeof values.identity === 'string' ? `no baseline is held for ${values.identity}` : 'no baseline is held';
      const table = formatTable(
        ['IDENTITY', 'FLOW', 'STATE', 'CALLS', 'PEAK', 'LAST SEEN'],
        items.flatMap((b) => b.flows.map((f) => [b.identity, f.flow, f.state, String(f.calls), `${f.peak}/${b.windowSeconds}s`, f.lastSeen])),
      );
      return truncated ? `${table}\n(more not shown: narrow with --identity)` : table;
    });
    return 0;
  }
  if (sub === 'reset') {
    if (rest.length !== 1 || values.flow !== undefined || values.identity !== undefined) throw new UsageError('expected `airlock baselines reset ID`');
    const identity = identityOf(rest[0], 'airlock baselines reset ID');
    const r = (await adminPost(credentialsOf(values), '/v1/baselines/reset', { identity })) as { identity: string; reset: boolean };
    print(output, r, () => (r.reset ? `${r.identity}: baseline forgotten; it learns again from its next call` : `${r.identity} had no baseline; it learns from its next call`));
    return 0;
  }
  if (sub === 'accept') {
    if (rest.length !== 1 || values.identity !== undefined) throw new UsageError('expected `airlock baselines accept ID --flow FLOW`');
    const identity = identityOf(rest[0], 'airlock baselines accept ID --flow FLOW');
    if (typeof values.flow !== 'string' || values.flow === '') throw new UsageError('--flow is required: the flow as `airlock baselines list --identity ID` shows it');
    const r = (await adminPost(credentialsOf(values), '/v1/baselines/accept', { identity, flow: values.flow })) as { identity: string; flow: string };
    print(output, r, () => `${r.identity}: "${r.flow}" is normal from now on`);
    return 0;
  }
  throw new UsageError('expected `airlock baselines list`, `airlock baselines reset ID` or `airlock baselines accept ID --flow FLOW` (see airlock baselines --help)');
}
