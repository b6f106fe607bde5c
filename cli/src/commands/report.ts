import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { formatTable } from '../admin-command.ts';
import { parseFlags, UsageError } from '../args.ts';
import { auditEventOf, checkReadable, logLines } from '../evidence/audit-input.ts';
import { parseWindow, ReportBuilder, type EvidenceReport } from '../evidence/evidence.ts';

const HELP = `Usage: airlock report --since T [--until T] [-o table|json] FILE...

The evidence summary over control plane logs (docs/compliance.md says which control each line is
evidence for): decisions (allowed, denied and held, by direction), denials by reason class
(no_policy, policy_deny, quarantined, revoked, rate_limited, header_mismatch, ambiguous_path,
threat_feed, secret, anomaly, tool_pin, approval, other: the reason_class of
airlock_authz_decisions_total, with contained told apart) and the policies that denied most, dry-run would-denies, rate-limited calls, tool-pin
findings, refusals by reason code, quarantines, releases and revocations, approvals, anomalies, CA
changes and refused certificate requests, admin changes (policy versions, tokens and certificates
made and revoked).

FILEs are control plane logs (JSON lines; other lines are skipped; - is stdin, FILE.gz is read
through gunzip), read a line at a time. Counts are of the audit events in the window: every call is
decided outbound, and again inbound when the callee's sidecar asks (no ticket). Check the files first
with \`airlock audit verify\`.

  --since T      start of the window (included): RFC 3339 (2026-12-04T10:00:00Z) or a duration before now (24h)
  --until T      end of the window (excluded), the same way; default: no end
  -o table|json  for people (default) or scripts

Exit codes: 0 printed, 2 bad input (bad flags or time, an unreadable file, a file with no audit event).`;

const counts = (c: Readonly<Record<string, number>>): string =>
  Object.entries(c)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([k, n]) => `${k} ${n}`)
    .join(', ') || '-';

function table(r: EvidenceReport): string {
  const d = r.decisions;
  const rows: [string, string][] = [
    ['window', `${r.window.since} .. ${r.window.until ?? 'now'}`],
    ['audit events', `${r.events} (${counts(r.byKind)})`],
    ['decisions', `${d.total} (${counts(d.byDirection)})`],
    ['denials by class', counts(d.denialsByClass)],
    ['top denying policies', d.topDenyingPolicies.map((p) => `${p.policy} ${p.denials}`).join(', ') || '-'],
    ['dry-run would deny', String(d.dryRunWouldDeny)],
    ['rate-limited calls', String(d.rateLimited)],
    ['tool-pin findings', String(d.toolPinFindings)],
    ['refusals', `${r.refusals.total} (${counts(r.refusals.byReasonCode)})`],
    ['quarantines', `${r.quarantines.quarantined} set, ${r.quarantines.released} released; ${r.quarantines.revoked} revoked`],
    ['approvals', `${r.approvals.held} held, ${r.approvals.approved} approved, ${r.approvals.denied} denied, ${r.approvals.timedOut} timed out`],
    ['anomalies', String(r.anomalies)],
    ['CA changes', counts(r.certificates.caChanges)],
    ['certificate requests refused', String(r.certificates.signRefusals)],
    ['admin changes', `${r.admin.total} (${counts(r.admin.byAction)})`],
    ['policy versions', r.admin.policyVersions.join(', ') || '-'],
    ['tokens/certs made, revoked', `${r.admin.tokensCreated}, ${r.admin.tokensRevoked}`],
  ];
  return formatTable(['EVIDENCE', 'COUNT'], rows);
}

export async function runReport(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    help: { type: 'boolean', short: 'h' },
    since: { type: 'string' },
    until: { type: 'string' },
    output: { type: 'string', short: 'o' },
  });
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  const output = values.output ?? 'table';
  if (output !== 'table' && output !== 'json') throw new UsageError(`-o must be table or json, got "${String(output)}"`);
  const builder = new ReportBuilder(parseWindow(values.since, values.until));
  if (positionals.length === 0) throw new UsageError('name at least one control plane log file (or - for stdin)');
  checkReadable(positionals);
  for (const file of positionals) {
    let events = 0;
    for await (const { line } of logLines(file)) {
      const e = auditEventOf(line);
      if (e === undefined) continue;
      events++;
      builder.add(e);
    }
    if (events === 0) throw new AirlockError(ErrorCode.BadRequest, `${file} holds no audit event: is it a control plane log?`);
  }
  const report = builder.finish();
  console.log(output === 'json' ? JSON.stringify(report, null, 2) : table(report));
  return 0;
}
