import { duration } from '@airlock/common/config';
import { errorMessage } from '@airlock/common/errors';
import { parseLabel } from '@airlock/common/labels';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { UsageError } from '../args.ts';
import { ADMIN_COMMAND_HELP, credentialsOf, formatTable, outputOf, parseAdminFlags, print } from '../admin-command.ts';
import { adminGet, adminPost } from '../admin-client.ts';

const HELP = `Usage: airlock quarantine spiffe://<td>/ns/<ns>/sa/<sa> --reason TEXT [--ttl 1h] [-o table|json|yaml]
       airlock quarantine --segment NAME --reason TEXT [--ttl 1h]
       airlock quarantine --selector KEY=VALUE --reason TEXT [--ttl 1h]
       airlock quarantine list [-o table|json|yaml]
       airlock release spiffe://<td>/ns/<ns>/sa/<sa> | --segment NAME | --selector KEY=VALUE [-o table|json|yaml]

Contains agents during an incident (role responder): from their next call, every decision naming one
(as source or destination, both directions) is denied with reason "quarantined", sidecars close its
open connections, and its certificate renewals are refused. --segment contains every member of a
segment of the policy in force, --selector every agent whose attested labels include KEY=VALUE: both
are judged at each decision, so an agent that joins later is contained too. Unlike \`airlock agent
revoke\` it is reversible: \`airlock release\` (with the same identity or selector) ends it, as does
--ttl (at most 30 days; without it, until released). Certificates stay valid. Each quarantine opens an
incident record (\`airlock incident list|show\`).

${ADMIN_COMMAND_HELP}`;

interface Quarantine {
  identity?: string;
  segment?: string;
  selector?: string;
  reason: string;
  actor: string;
  since: string;
  until?: string;
  matched?: string[];
  matchedTotal?: number;
  incident?: string;
}

const TARGET_FLAGS = { segment: { type: 'string' }, selector: { type: 'string' } } as const;

/** The identity, segment or selector a command names: exactly one, checked before any request. */
function targetOf(positional: string | undefined, values: Readonly<Record<string, unknown>>, usage: string): Record<string, string> {
  const given = [positional, values.segment, values.selector].filter((v) => v !== undefined);
  if (given.length !== 1) throw new UsageError(`expected exactly one of a SPIFFE ID, --segment NAME or --selector KEY=VALUE: ${usage}`);
  if (typeof values.segment === 'string') return { segment: values.segment };
  if (typeof values.selector === 'string') {
    try {
      parseLabel(values.selector);
    } catch (err) {
      throw new UsageError(`--selector: ${errorMessage(err)}`);
    }
    return { selector: values.selector };
  }
  return { identity: parseSpiffeId(positional ?? '').uri };
}

const describe = (q: { identity?: string | undefined; segment?: string | undefined; selector?: string | undefined }): string =>
  q.identity ?? (q.segment !== undefined ? `segment ${q.segment}` : `selector ${q.selector ?? ''}`);

export async function runQuarantine(argv: string[]): Promise<number> {
  const { values, positionals } = parseAdminFlags(argv, { reason: { type: 'string' }, ttl: { type: 'string' }, ...TARGET_FLAGS });
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  const output = outputOf(values.output);
  const [first, ...extra] = positionals;
  if (extra.length > 0) throw new UsageError('expected `airlock quarantine <spiffe-id> --reason TEXT` or `airlock quarantine list`');
  if (first === 'list') {
    if (values.reason !== undefined || values.ttl !== undefined || values.segment !== undefined || values.selector !== undefined) throw new UsageError('`airlock quarantine list` takes no --reason, --ttl, --segment or --selector');
    const { items } = (await adminGet(credentialsOf(values), '/v1/quarantines')) as { items: Quarantine[] };
    print(output, items, () => (items.length === 0 ? 'no agent is quarantined' : formatTable(['CONTAINS', 'SINCE', 'UNTIL', 'BY', 'REASON'], items.map((q) => [describe(q), q.since, q.until ?? 'released', q.actor, q.reason]))));
    return 0;
  }
  const target = targetOf(first, values, 'airlock quarantine <spiffe-id> | --segment NAME | --selector KEY=VALUE --reason TEXT');
  if (typeof values.reason !== 'string' || values.reason.trim() === '') throw new UsageError('--reason is required: what the incident is (it is kept with the quarantine and audited)');
  let ttlSeconds: number | undefined;
  if (typeof values.ttl === 'string') {
    try {
      // No timer waits on it here: the control plane bounds a TTL.
      ttlSeconds = Math.ceil(duration({ description: 'ttl', minMs: 1000, maxMs: Number.MAX_SAFE_INTEGER }).parse(values.ttl) / 1000);
    } catch (err) {
      throw new UsageError(`--ttl: ${errorMessage(err)}`);
    }
  }
  const q = (await adminPost(credentialsOf(values), '/v1/agents/quarantine', { ...target, reason: values.reason, ...(ttlSeconds === undefined ? {} : { ttlSeconds }) })) as Quarantine;
  print(output, q, () => {
    const matched = q.identity === undefined ? `, matching ${q.matchedTotal ?? 0} registered agent(s) now` : '';
    return `${describe(q)} quarantined (${q.reason}) from ${q.since}${q.until === undefined ? ' until released' : ` until ${q.until}`}${matched}: every call naming it is denied; incident ${q.incident ?? ''}`;
  });
  return 0;
}

export async function runRelease(argv: string[]): Promise<number> {
  const { values, positionals } = parseAdminFlags(argv, TARGET_FLAGS);
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  const [first, ...extra] = positionals;
  if (extra.length > 0) throw new UsageError('expected `airlock release <spiffe-id>`');
  const target = targetOf(first, values, 'airlock release <spiffe-id> | --segment NAME | --selector KEY=VALUE');
  const output = outputOf(values.output);
  const r = (await adminPost(credentialsOf(values), '/v1/agents/release', target)) as { identity?: string; segment?: string; selector?: string; released: boolean; incident?: string; stillQuarantinedBy?: { segment?: string; selector?: string } };
  print(output, r, () => {
    const head = r.released ? `${describe(r)} released: its calls are decided by policy again${r.incident === undefined ? '' : ` (incident ${r.incident} closed)`}` : `${describe(r)} was not quarantined`;
    return r.stillQuarantinedBy === undefined ? head : `${head}\nbut it is still quarantined by ${describe(r.stillQuarantinedBy)}`;
  });
  return 0;
}
