import { once } from 'node:events';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import { parseFlags, UsageError } from '../args.ts';
import { auditEventOf, checkReadable, logLines } from '../evidence/audit-input.ts';
import { inWindow, namesIdentity, parseWindow, type TimeWindow } from '../evidence/evidence.ts';
import { verifyLogs, verifyResultText } from './audit.ts';

const HELP = `Usage: airlock export --identity ID --since T [--until T] [--verify --trust-bundle FILE [--partial]] FILE...

Writes to stdout, as JSON lines in the audit schema (docs/audit-schema.md: each line one event, the
\`audit\` object of a control plane log line, unchanged), every audit event in the time window that
names the identity: decisions where it is the source or the destination, refusals of its requests,
admin actions on it (quarantine, release, revoke …) or by it, approvals of its calls, and any other
event naming it. What an investigator hands on; the events keep their chain, seq and prevHash, so
each can be matched to the verified log it came from.

FILEs are control plane logs (JSON lines as the control plane writes them to stdout; other lines are
skipped; - is stdin, FILE.gz is read through gunzip), oldest first. They are read a line at a time.

  --identity ID       the agent's SPIFFE ID (spiffe://<trust domain>/ns/<ns>/sa/<sa>)
  --since T           start of the window (included): an RFC 3339 time with its offset
                      (2026-12-04T10:00:00Z) or a duration before now (24h, 30m)
  --until T           end of the window (excluded), the same way; default: no end
  --verify            first check the files' hash chains and signed checkpoints (as airlock audit
                      verify does), and write nothing unless they hold
  --trust-bundle FILE with --verify: <dataDir>/trust-bundle.pem
  --partial           with --verify: the logs do not reach back to the start of each chain

Exit codes: 0 written (perhaps no event: the count is on stderr), 1 --verify found a break (named:
file:line, seq, what; nothing written), 2 bad input (bad flags or time, an unreadable file, a file
with no audit event).`;

/** Writes a line to stdout, waiting when its buffer is full: memory stays bounded however much matches. */
async function writeLine(line: string): Promise<void> {
  if (!process.stdout.write(`${line}\n`)) await once(process.stdout, 'drain');
}

/** Throws (exit 2) for a file with no audit event: a wrong file given is said, not exported as nothing. */
async function requireAuditEvents(file: string): Promise<void> {
  for await (const { line } of logLines(file)) if (auditEventOf(line) !== undefined) return;
  throw new AirlockError(ErrorCode.BadRequest, `${file} holds no audit event: is it a control plane log?`);
}

async function exportEvents(files: readonly string[], identity: string, w: TimeWindow): Promise<number> {
  let written = 0;
  for (const file of files) {
    let events = 0;
    for await (const { line } of logLines(file)) {
      const e = auditEventOf(line);
      if (e === undefined) continue;
      events++;
      if (inWindow(e, w) && namesIdentity(e, identity)) {
        await writeLine(JSON.stringify(e));
        written++;
      }
    }
    if (events === 0) throw new AirlockError(ErrorCode.BadRequest, `${file} holds no audit event: is it a control plane log?`);
  }
  return written;
}

export async function runExport(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    help: { type: 'boolean', short: 'h' },
    identity: { type: 'string' },
    since: { type: 'string' },
    until: { type: 'string' },
    verify: { type: 'boolean' },
    'trust-bundle': { type: 'string' },
    partial: { type: 'boolean' },
  });
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  const identity = values.identity;
  if (typeof identity !== 'string') throw new UsageError('--identity ID is required: the SPIFFE ID of the agent');
  try {
    parseSpiffeId(identity);
  } catch (err) {
    throw new UsageError(`--identity: ${errorMessage(err)}`);
  }
  const w = parseWindow(values.since, values.until);
  const files = positionals;
  if (files.length === 0) throw new UsageError('name at least one control plane log file (or - for stdin)');
  const bundle = values['trust-bundle'];
  if (values.verify !== true && (bundle !== undefined || values.partial === true)) throw new UsageError('--trust-bundle and --partial go with --verify');
  checkReadable(files);
  if (values.verify === true) {
    if (typeof bundle !== 'string') throw new UsageError('--verify needs --trust-bundle FILE (<dataDir>/trust-bundle.pem)');
    if (files.includes('-')) throw new UsageError('--verify reads the files twice: give files, not stdin');
    const result = await verifyLogs(files, bundle, values.partial === true);
    if (result.broken !== undefined) {
      console.error(`airlock: the audit trail does not verify, nothing exported: ${verifyResultText(result).split('\n')[0] ?? ''}`);
      return 1;
    }
    if (result.events === 0) throw new AirlockError(ErrorCode.BadRequest, 'no audit event in the input: are these control plane logs?');
  } else {
    // Said before anything is written: a wrong file (a sidecar's log, a typo'd name) is bad input.
    for (const file of files) if (file !== '-') await requireAuditEvents(file);
  }
  // A reader that stops early (| head) ends the export, without a stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  const written = await exportEvents(files, identity, w);
  console.error(`airlock: exported ${written} audit event(s) naming ${identity}`);
  return 0;
}
