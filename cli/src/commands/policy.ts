import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { definedSegments, parsePolicyDocuments } from '@airlock/control-plane/policy';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import { adminDelete, adminGet, adminPost } from '../admin-client.ts';
import { parseFlags, UsageError } from '../args.ts';
import { ADMIN_COMMAND_HELP, credentialsOf, formatLabels, formatTable, outputOf, parseAdminFlags, print } from '../admin-command.ts';

const COMMON = `${ADMIN_COMMAND_HELP}
Exit codes: 0 ok; 1 runtime failure or refused (unreachable, 401, 403, 404, 409); 2 bad usage or an
invalid policy (nothing was changed); 3 \`diff\` found changes.`;

export const POLICY_HELP: Readonly<Record<string, string>> = {
  apply: 'Usage: airlock apply -f FILE|DIR [-o table|json|yaml]\n\nAdds or replaces the Segment and Policy documents of FILE (or every .yaml/.yml file of DIR) by\nkind and name, atomically, as a new policy version. A bad bundle changes nothing.',
  diff: 'Usage: airlock diff -f FILE|DIR [-o table|json|yaml]\n\nShows what `apply` would change, without changing anything.',
  get: 'Usage: airlock get segments|policies|ratelimits|baselines|threat-feeds|agents|policy [NAME] [--version N] [-o table|json|yaml]\n\nLists the documents of the current policy version (or of --version N), the registered agents, or each threat feed\'s loaded copy (version, entries, bad entries, age, last error).',
  delete: 'Usage: airlock delete segment|policy|ratelimit|baseline|threat-feed NAME\n\nDeletes one document as a new policy version. A segment a policy, RateLimit or Baseline still uses is refused.',
  history: 'Usage: airlock history [-o table|json|yaml]\n\nThe policy versions, newest first: who made each, and how.',
  rollback: 'Usage: airlock rollback --to N\n\nMakes version N\'s documents current again, as a new version.',
  explain: 'Usage: airlock explain --from SPIFFE-ID --to HOST[:PORT] [--method GET] [--path /] [--tool T [--args JSON]] [--header NAME=VALUE]... [-o table|json|yaml]\n\nThe decision the control plane would make for this call now (verdict, policy version, policy, rule,\nreason), without sending traffic. PORT defaults to 80. --tool T explains an MCP tools/call of tool T\n(method POST unless --method says otherwise), with --args its arguments (a JSON object, {} if not given)\nfor argument rules. --header (repeatable) gives the headers of the call for header\nrules; the headers given are taken as all the headers of the call.',
  validate: 'Usage: airlock validate -f FILE|DIR\n\nChecks documents offline, with every problem as file:line:col. Exit 0 valid, 2 invalid.',
};

interface Change {
  kind: string;
  name: string;
  change: string;
  lines: string[];
}
interface ChangeResult {
  version: number;
  changed: boolean;
  changes: Change[];
}

/** The files of -f: one file, or the .yaml/.yml files of a directory in name order. */
export function readDocuments(target: unknown): { file: string; text: string }[] {
  if (typeof target !== 'string') throw new UsageError('-f FILE|DIR is required');
  try {
    if (!statSync(target).isDirectory()) return [{ file: target, text: readFileSync(target, 'utf8') }];
    const files = readdirSync(target).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => join(target, f));
    if (files.length === 0) throw new AirlockError(ErrorCode.Policy, `${target} holds no .yaml or .yml files`);
    return files.map((file) => ({ file, text: readFileSync(file, 'utf8') }));
  } catch (err) {
    if (err instanceof AirlockError) throw err;
    throw new AirlockError(ErrorCode.Policy, `cannot read ${target}: ${errorMessage(err)}`);
  }
}

/** Several files are sent as one bundle (one atomic version); one file keeps its name for messages. */
function bundle(target: unknown): { yaml: string; file: string } {
  const docs = readDocuments(target);
  if (docs.length === 1 && docs[0] !== undefined) return { yaml: docs[0].text, file: docs[0].file };
  // Checked here first, so problems name the file, line and column rather than a joined bundle.
  validateDocuments(docs);
  return { yaml: docs.map((d) => d.text).join('\n---\n'), file: String(target) };
}

function changesTable(r: { changes: Change[] }): string {
  if (r.changes.length === 0) return 'no changes';
  return r.changes.map((c) => `${c.change} ${c.kind}/${c.name}\n${c.lines.filter((l) => !l.startsWith('  ') || c.change === 'changed').map((l) => `    ${l}`).join('\n')}`).join('\n');
}

function helpOr(name: string, values: Record<string, unknown>): boolean {
  if (values.help !== true) return false;
  console.log(`${POLICY_HELP[name] ?? ''}\n\n${COMMON}`);
  return true;
}

export async function runApply(argv: string[]): Promise<number> {
  const { values } = parseAdminFlags(argv, { file: { type: 'string', short: 'f' } });
  if (helpOr('apply', values)) return 0;
  const output = outputOf(values.output);
  const body = bundle(values.file);
  const r = (await adminPost(credentialsOf(values), '/v1/policy/apply', body)) as ChangeResult;
  print(output, r, () => (r.changed ? `applied: policy version ${r.version}\n${changesTable(r)}` : `unchanged: policy version ${r.version}`));
  return 0;
}

export async function runDiff(argv: string[]): Promise<number> {
  const { values } = parseAdminFlags(argv, { file: { type: 'string', short: 'f' } });
  if (helpOr('diff', values)) return 0;
  const output = outputOf(values.output);
  const r = (await adminPost(credentialsOf(values), '/v1/policy/diff', bundle(values.file))) as { version: number; changes: Change[] };
  print(output, r, () => `against policy version ${r.version}:\n${changesTable(r)}`);
  return r.changes.length === 0 ? 0 : 3;
}

export async function runGet(argv: string[]): Promise<number> {
  const { values, positionals } = parseAdminFlags(argv, { version: { type: 'string' } });
  if (helpOr('get', values)) return 0;
  const output = outputOf(values.output);
  const [what, name, ...more] = positionals;
  if (more.length > 0) throw new UsageError(`unexpected argument "${more[0] ?? ''}"`);
  const c = credentialsOf(values);
  if (what === 'agents') {
    const r = (await adminGet(c, '/v1/agents')) as { items: { spiffeId: string; inboundAddress: string; updatedAt: number; labels?: Record<string, string> }[] };
    print(output, r.items, () => formatTable(['SPIFFE ID', 'INBOUND', 'UPDATED', 'LABELS'], r.items.map((a) => [a.spiffeId, a.inboundAddress, new Date(a.updatedAt).toISOString(), formatLabels(a.labels)])));
    return 0;
  }
  if (what === 'threat-feeds' || what === 'threat-feed') return (await import('./threat-feeds.ts')).getThreatFeeds(c, output, name);
  const kind = what === 'segments' || what === 'segment' ? 'Segment' : what === 'policies' || what === 'policy' ? 'Policy' : what === 'ratelimits' || what === 'ratelimit' ? 'RateLimit' : what === 'baselines' || what === 'baseline' ? 'Baseline' : undefined;
  if (kind === undefined) throw new UsageError('expected `airlock get segments|policies|ratelimits|baselines|threat-feeds|agents [NAME]`');
  let path = '/v1/policy';
  if (typeof values.version === 'string') {
    if (!/^\d{1,9}$/.test(values.version)) throw new UsageError('--version must be a version number');
    path = `/v1/policy/versions/${values.version}`;
  }
  const r = (await adminGet(c, path)) as { version: number; documents: { kind: string; name: string; yaml: string }[] };
  const docs = r.documents.filter((d) => d.kind === kind && (name === undefined || d.name === name));
  if (name !== undefined && docs.length === 0) throw new AirlockError(ErrorCode.NotFound, `${kind} "${name}" does not exist in policy version ${r.version}`);
  if (output === 'yaml' || (output === 'table' && name !== undefined)) {
    process.stdout.write(docs.map((d) => d.yaml).join('---\n'));
    return 0;
  }
  print(output, { version: r.version, items: docs }, () => formatTable(['NAME', 'VERSION'], docs.map((d) => [d.name, String(r.version)])));
  return 0;
}

export async function runDelete(argv: string[]): Promise<number> {
  const { values, positionals } = parseAdminFlags(argv);
  if (helpOr('delete', values)) return 0;
  const output = outputOf(values.output);
  const [what, name, ...more] = positionals;
  const plural = what === 'segment' || what === 'segments' ? 'segments' : what === 'policy' || what === 'policies' ? 'policies' : what === 'ratelimit' || what === 'ratelimits' ? 'ratelimits' : what === 'baseline' || what === 'baselines' ? 'baseline-documents' : what === 'threat-feed' || what === 'threat-feeds' ? 'threat-feeds' : undefined;
  if (plural === undefined || name === undefined || more.length > 0) throw new UsageError('expected `airlock delete segment|policy|ratelimit|baseline|threat-feed NAME`');
  const r = (await adminDelete(credentialsOf(values), `/v1/${plural}/${encodeURIComponent(name)}`)) as ChangeResult;
  print(output, r, () => `deleted: policy version ${r.version}\n${changesTable(r)}`);
  return 0;
}

export async function runHistory(argv: string[]): Promise<number> {
  const { values } = parseAdminFlags(argv);
  if (helpOr('history', values)) return 0;
  const output = outputOf(values.output);
  const r = (await adminGet(credentialsOf(values), '/v1/policy/history')) as { versions: { version: number; createdAt: number; actor: string; action: string; summary: string }[] };
  print(output, r.versions, () =>
    formatTable(['VERSION', 'CREATED', 'BY', 'ACTION', 'SUMMARY'], r.versions.map((v) => [String(v.version), new Date(v.createdAt).toISOString(), v.actor, v.action, v.summary])),
  );
  return 0;
}

export async function runRollback(argv: string[]): Promise<number> {
  const { values } = parseAdminFlags(argv, { to: { type: 'string' } });
  if (helpOr('rollback', values)) return 0;
  const output = outputOf(values.output);
  if (typeof values.to !== 'string' || !/^\d{1,9}$/.test(values.to)) throw new UsageError('--to N (a version number) is required');
  const r = (await adminPost(credentialsOf(values), '/v1/policy/rollback', { to: Number(values.to) })) as ChangeResult;
  print(output, r, () => (r.changed ? `rolled back: policy version ${r.version} has the documents of version ${values.to as string}\n${changesTable(r)}` : `unchanged: version ${r.version} already has them`));
  return 0;
}

export async function runExplain(argv: string[]): Promise<number> {
  const { values } = parseAdminFlags(argv, { from: { type: 'string' }, to: { type: 'string' }, method: { type: 'string' }, path: { type: 'string' }, tool: { type: 'string' }, args: { type: 'string' }, header: { type: 'string', multiple: true } });
  if (helpOr('explain', values)) return 0;
  const headers = (Array.isArray(values.header) ? values.header : []).map((h) => {
    const eq = typeof h === 'string' ? h.indexOf('=') : -1;
    if (typeof h !== 'string' || eq <= 0) throw new UsageError(`--header takes NAME=VALUE (got ${String(h)})`);
    return { name: h.slice(0, eq), value: h.slice(eq + 1) };
  });
  const tool = typeof values.tool === 'string' ? values.tool : undefined;
  let args: unknown;
  if (typeof values.args === 'string') {
    if (tool === undefined) throw new UsageError('--args needs --tool');
    try {
      args = JSON.parse(values.args);
    } catch {
      throw new UsageError(`--args takes a JSON object (got ${values.args.slice(0, 100)})`);
    }
  }
  const output = outputOf(values.output);
  if (typeof values.from !== 'string' || typeof values.to !== 'string') throw new UsageError('--from SPIFFE-ID and --to HOST[:PORT] are required');
  const r = (await adminPost(credentialsOf(values), '/v1/explain', {
    from: values.from,
    to: values.to,
    method: typeof values.method === 'string' ? values.method : tool === undefined ? 'GET' : 'POST',
    ...(typeof values.path === 'string' ? { path: values.path } : {}),
    ...(tool === undefined ? {} : { tool }),
    ...(args === undefined ? {} : { args }),
    ...(headers.length === 0 ? {} : { headers }),
  })) as { allow: boolean; dryRunDeny: boolean; version: number; policy: string; rule: string; reason: string; destination: string; arguments?: { path: string; value: string }[]; tls?: string; approval?: { role: string; timeoutMs: number } };
  print(output, r, () =>
    [
      `decision:       ${r.allow ? (r.dryRunDeny ? 'allow (dry-run: would deny)' : 'allow') : 'deny'}`,
      `policy version: ${r.version}`,
      `policy:         ${r.policy === '' ? '(none: default deny)' : r.policy}`,
      `rule:           ${r.rule === '' ? '-' : r.rule}`,
      ...(r.arguments === undefined ? [] : [`arguments:      ${r.arguments.map((a) => `${a.path}=${a.value}`).join(', ')}`]),
      `destination:    ${r.destination === '' ? '(external host)' : r.destination}`,
      // How the sidecar reaches the host (policy tls:): only when a policy says it.
      ...(r.allow && r.tls !== undefined ? [`tls:            ${r.tls}`] : []),
      // A call the rule holds until a human approves it (README "Human approval").
      ...(r.allow && r.approval !== undefined ? [`approval:       required (${r.approval.role}, within ${r.approval.timeoutMs / 1000}s)`] : []),
      `reason:         ${r.reason}`,
    ].join('\n'),
  );
  return 0;
}

export function runValidate(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { help: { type: 'boolean', short: 'h' }, file: { type: 'string', short: 'f' } });
  if (values.help === true) {
    console.log(POLICY_HELP.validate);
    return Promise.resolve(0);
  }
  const { segments, policies, rateLimits, threatFeeds } = validateDocuments(readDocuments(values.file));
  console.log(`valid: ${segments} segment(s), ${policies} polic${policies === 1 ? 'y' : 'ies'}${rateLimits === 0 ? '' : `, ${rateLimits} rate limit(s)`}${threatFeeds === 0 ? '' : `, ${threatFeeds} threat feed(s)`}`);
  return Promise.resolve(0);
}

/**
 * Validates files as one set with exact file:line:col: each file is checked on its own, with the
 * segments the other files define counted as known (a policy may use a segment of another file).
 */
export function validateDocuments(docs: readonly { file: string; text: string }[]): { segments: number; policies: number; rateLimits: number; threatFeeds: number } {
  const segmentsOf = new Map(docs.map((d) => [d.file, definedSegments(d.text, d.file)]));
  const problems: string[] = [];
  let segments = 0;
  let policies = 0;
  let rateLimits = 0;
  let threatFeeds = 0;
  for (const d of docs) {
    const known = new Set(docs.filter((o) => o !== d).flatMap((o) => segmentsOf.get(o.file) ?? []));
    try {
      const p = parsePolicyDocuments(d.text, d.file, known);
      segments += p.docs.segments.length;
      policies += p.docs.policies.length;
      rateLimits += p.ordered.filter((o) => o.kind === 'RateLimit').length;
      threatFeeds += p.ordered.filter((o) => o.kind === 'ThreatFeed').length;
    } catch (err) {
      if (!(err instanceof AirlockError)) throw err;
      problems.push(err.message.replace(/^invalid policy:\n/, ''));
    }
  }
  if (problems.length > 0) throw new AirlockError(ErrorCode.Policy, `invalid policy:\n${problems.join('\n')}`);
  return { segments, policies, rateLimits, threatFeeds };
}
