import { duration } from '@airlock/common/config';
import { errorMessage } from '@airlock/common/errors';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { UsageError } from '../args.ts';
import { ADMIN_COMMAND_HELP, credentialsOf, formatTable, outputOf, parseAdminFlags, print } from '../admin-command.ts';
import { adminGet, adminPost } from '../admin-client.ts';

const HELP = `Usage: airlock quarantine spiffe://<td>/ns/<ns>/sa/<sa> --reason TEXT [--ttl 1h] [-o table|json|yaml]
       airlock quarantine list [-o table|json|yaml]
       airlock release spiffe://<td>/ns/<ns>/sa/<sa> [-o table|json|yaml]

Contains an agent during an incident (role responder): from its next call, every decision naming it
(as source or destination, both directions) is denied with reason "quarantined", and its certificate
renewals are refused. Unlike \`airlock agent revoke\` it is reversible: \`airlock release\` ends it, as
does --ttl (at most 30 days; without it, until released). Its certificates stay valid.

${ADMIN_COMMAND_HELP}`;

interface Quarantine {
  identity: string;
  reason: string;
  actor: string;
  since: string;
  until?: string;
}

export async function runQuarantine(argv: string[]): Promise<number> {
  const { values, positionals } = parseAdminFlags(argv, { reason: { type: 'string' }, ttl: { type: 'string' } });
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  const output = outputOf(values.output);
  const [target, ...extra] = positionals;
  if (target === undefined || extra.length > 0) throw new UsageError('expected `airlock quarantine <spiffe-id> --reason TEXT` or `airlock quarantine list`');
  if (target === 'list') {
    if (values.reason !== undefined || values.ttl !== undefined) throw new UsageError('--reason and --ttl go with `airlock quarantine <spiffe-id>`');
    const { items } = (await adminGet(credentialsOf(values), '/v1/quarantines')) as { items: Quarantine[] };
    print(output, items, () => (items.length === 0 ? 'no agent is quarantined' : formatTable(['IDENTITY', 'SINCE', 'UNTIL', 'BY', 'REASON'], items.map((q) => [q.identity, q.since, q.until ?? 'released', q.actor, q.reason]))));
    return 0;
  }
  parseSpiffeId(target);
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
  const q = (await adminPost(credentialsOf(values), '/v1/agents/quarantine', { identity: target, reason: values.reason, ...(ttlSeconds === undefined ? {} : { ttlSeconds }) })) as Quarantine;
  print(output, q, () => `${q.identity} quarantined (${q.reason}) from ${q.since}${q.until === undefined ? ' until released' : ` until ${q.until}`}: every call naming it is denied`);
  return 0;
}

export async function runRelease(argv: string[]): Promise<number> {
  const { values, positionals } = parseAdminFlags(argv);
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  const [target, ...extra] = positionals;
  if (target === undefined || extra.length > 0) throw new UsageError('expected `airlock release <spiffe-id>`');
  parseSpiffeId(target);
  const output = outputOf(values.output);
  const r = (await adminPost(credentialsOf(values), '/v1/agents/release', { identity: target })) as { identity: string; released: boolean };
  print(output, r, () => (r.released ? `${r.identity} released: its calls are decided by policy again` : `${r.identity} was not quarantined`));
  return 0;
}
