// Reading control plane logs for the audit commands (verify, export, report): a line at a time, so
// that logs of any size are read in bounded memory; `-` is stdin; a `.gz` file (logrotate's
// compress) is read through gunzip.
import { accessSync, constants, createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';

export const unreadable = (file: string, err: unknown): AirlockError =>
  new AirlockError(ErrorCode.BadRequest, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`);

/** Throws (exit 2) unless every file can be read: bad input is found before any output. */
export function checkReadable(files: readonly string[]): void {
  for (const file of files) {
    try {
      if (file !== '-') accessSync(file, constants.R_OK);
    } catch (err) {
      throw unreadable(file, err);
    }
  }
}

/** The lines of `file` with their numbers (from 1); stop early by breaking out of the loop. */
export async function* logLines(file: string): AsyncGenerator<{ readonly n: number; readonly line: string }> {
  const raw = file === '-' ? process.stdin : createReadStream(file);
  await new Promise<void>((resolve, reject) => {
    if (file === '-') resolve();
    raw.once('ready', () => resolve());
    raw.once('error', (err: Error) => reject(unreadable(file, err)));
  });
  const input: Readable = file.endsWith('.gz') ? raw.pipe(createGunzip()) : raw;
  input.setEncoding('utf8');
  let n = 0;
  try {
    for await (const line of createInterface({ input, crlfDelay: Infinity })) yield { n: ++n, line };
  } catch (err) {
    // readline passes on the stream's error: a damaged or cut gzip file, a read failing midway.
    throw file.endsWith('.gz') && typeof (err as { code?: unknown }).code === 'string' && (err as { code: string }).code.startsWith('Z_')
      ? new AirlockError(ErrorCode.BadRequest, `cannot read ${file}: not a whole gzip file (${errorMessage(err)})`)
      : unreadable(file, err);
  } finally {
    if (file !== '-') raw.destroy();
  }
}

/**
 * The audit event of a log line (its `audit` object), or undefined for any other line. A line is
 * parsed only when it names the field: most lines of a mixed log are not events.
 */
export function auditEventOf(line: string): Record<string, unknown> | undefined {
  if (!line.includes('"audit"')) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return undefined;
  }
  const audit = typeof parsed === 'object' && parsed !== null ? (parsed as { audit?: unknown }).audit : undefined;
  return typeof audit === 'object' && audit !== null && !Array.isArray(audit) && typeof (audit as { kind?: unknown }).kind === 'string' ? (audit as Record<string, unknown>) : undefined;
}
