import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import { AuditChainVerifier, type VerifyResult } from '@airlock/control-plane/audit';
import { parseFlags, UsageError } from '../args.ts';
import { checkReadable, logLines, unreadable } from '../evidence/audit-input.ts';

const HELP = `Usage: airlock audit verify --trust-bundle FILE [--partial] [-o text|json] FILE...

Checks the audit trail in control plane logs (JSON lines, as the control plane writes them to stdout;
lines that are not audit events are ignored; FILE - is stdin, FILE.gz is read through gunzip). Each replica's events form hash chains
(one per process start); verify checks that every chain starts at seq 0, that no seq is missing,
repeated or moved, that each event names the hash of the one before it, that every checkpoint is
signed by a control plane certificate chaining to the trust bundle, and that a chain naming the one
before a restart matches it. Give files in the order they were written (rotated files oldest first).

  --trust-bundle FILE  PEM root(s) the control plane's certificates chain to: <dataDir>/trust-bundle.pem
                       (keep retired roots in it to verify logs signed before a rollover)
  --partial            the logs do not reach back to the start of each chain (older files rotated
                       away): a chain may begin at any seq, and a previous chain it names may be absent
  -o text|json         the result for people (default) or scripts

Events after a chain's last checkpoint are vouched for by the chain only: verify says how many.
Exit codes: 0 every chain holds, 1 a chain is broken (the first break is named: file:line, seq, what),
2 bad input (an unreadable file or trust bundle, bad flags).`;

function readInput(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw unreadable(file, err);
  }
}

function readRoots(file: string): X509Certificate[] {
  const pems = readInput(file).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (pems.length === 0) throw new AirlockError(ErrorCode.BadRequest, `${file} holds no PEM certificate: give the trust bundle (<dataDir>/trust-bundle.pem)`);
  try {
    return pems.map((p) => new X509Certificate(p));
  } catch (err) {
    throw new AirlockError(ErrorCode.BadRequest, `${file}: a certificate cannot be read: ${errorMessage(err)}`);
  }
}

export function verifyResultText(r: VerifyResult): string {
  const chains = r.chains.map((c) => `  chain ${c.chain} (replica ${c.replica}): seq ${c.firstSeq}..${c.lastSeq}, ${c.checkpoints} signed checkpoint(s)`);
  const head =
    r.broken === undefined ? `ok: ${r.events} audit event(s) in ${r.chains.length} chain(s)`
    : `broken: ${r.broken.file}:${r.broken.line}${r.broken.seq === undefined ? '' : ` seq ${r.broken.seq}`}${r.broken.chain === undefined ? '' : ` (chain ${r.broken.chain})`}: ${r.broken.what}`;
  return [head, ...chains, ...r.warnings.map((w) => `warning: ${w}`)].join('\n');
}

/**
 * Checks the hash chains and signed checkpoints of `files` (oldest first; `-` is stdin, `.gz`
 * read through gunzip) against the roots in `bundle`, a line at a time; stops at the first break.
 * Throws (exit 2) for an unreadable file or bundle, before reading any log.
 */
export async function verifyLogs(files: readonly string[], bundle: string, partial: boolean): Promise<VerifyResult> {
  const roots = readRoots(bundle);
  checkReadable(files);
  const verifier = new AuditChainVerifier({ roots, partial });
  for (const file of files) {
    for await (const { n, line } of logLines(file)) if (verifier.line(file, n, line) !== undefined) break;
    if (verifier.broken !== undefined) break;
  }
  return verifier.finish();
}

export async function runAudit(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    help: { type: 'boolean', short: 'h' },
    'trust-bundle': { type: 'string' },
    partial: { type: 'boolean' },
    output: { type: 'string', short: 'o' },
  });
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  const [verb, ...files] = positionals;
  if (verb !== 'verify') throw new UsageError('expected `airlock audit verify --trust-bundle FILE FILE...`');
  if (files.length === 0) throw new UsageError('name at least one log file (or - for stdin)');
  const bundle = values['trust-bundle'];
  if (typeof bundle !== 'string') throw new UsageError('--trust-bundle FILE is required: checkpoints are checked against it');
  const output = values.output ?? 'text';
  if (output !== 'text' && output !== 'json') throw new UsageError(`-o must be text or json, got "${String(output)}"`);
  const result = await verifyLogs(files, bundle, values.partial === true);
  console.log(output === 'json' ? JSON.stringify(result, null, 2) : verifyResultText(result));
  if (result.broken === undefined && result.events === 0) {
    console.error('airlock: no audit event in the input (is it a control plane log?)');
    return 2;
  }
  return result.broken === undefined ? 0 : 1;
}
