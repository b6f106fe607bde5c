import { appendFileSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type SpoolFullPolicy = 'drop-oldest' | 'fail-closed';

export interface SpoolOptions {
  /** A directory of its own: segment files `<n>.jsonl` and `cursor.json`. */
  readonly dir: string;
  /** Undelivered bytes kept at most (on disk and buffered). */
  readonly maxBytes: number;
  /** When full: drop the oldest events (counted), or refuse new ones (the caller refuses decisions). */
  readonly full: SpoolFullPolicy;
  /** Events dropped (drop-oldest) or refused (fail-closed) because the spool was full. */
  readonly onDrop: (events: number) => void;
}

interface Segment {
  readonly n: number;
  bytes: number;
  lines: number;
}

/** A batch read from the spool: `ack` it once delivered. */
export interface SpoolBatch {
  readonly lines: readonly string[];
  readonly segment: number;
  readonly endOffset: number;
}

const FLUSH_BYTES = 64 * 1024;
const MAX_SEGMENT_BYTES = 1024 * 1024;

const countLines = (text: string): number => {
  let n = 0;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
  return n;
};

/**
 * A bounded on-disk queue of JSON lines for one sink: appended lines are buffered and written to
 * the newest segment file (at 64 KiB, or by `flush()`, which the sink calls every few tens of ms);
 * batches are read from the oldest, and a segment is deleted once delivered. The read position is
 * kept in cursor.json, so a restart delivers what is left. Lines are never rewritten: a process
 * killed loses at most what was buffered, as stdout's own buffer.
 */
export class Spool {
  readonly #o: SpoolOptions;
  readonly #segments: Segment[] = [];
  /** Read position in the oldest segment (bytes, and lines before it). */
  #offset = 0;
  #linesBefore = 0;
  #buffer: string[] = [];
  #bufferBytes = 0;
  readonly #segmentBytes: number;

  constructor(o: SpoolOptions) {
    this.#o = o;
    this.#segmentBytes = Math.max(4096, Math.min(MAX_SEGMENT_BYTES, Math.floor(o.maxBytes / 4)));
    mkdirSync(o.dir, { recursive: true, mode: 0o700 });
    const numbers = readdirSync(o.dir)
      .flatMap((f) => (/^\d+\.jsonl$/.test(f) ? [Number(f.slice(0, -6))] : []))
      .sort((a, b) => a - b);
    for (const n of numbers) {
      const text = readFileSync(this.#file(n), 'utf8');
      this.#segments.push({ n, bytes: Buffer.byteLength(text), lines: countLines(text) });
    }
    try {
      const c = JSON.parse(readFileSync(join(o.dir, 'cursor.json'), 'utf8')) as { segment?: unknown; offset?: unknown };
      const first = this.#segments[0];
      if (first !== undefined && c.segment === first.n && typeof c.offset === 'number' && c.offset <= first.bytes) {
        this.#offset = c.offset;
        this.#linesBefore = countLines(readFileSync(this.#file(first.n), 'utf8').slice(0, c.offset));
      }
    } catch {
      // No cursor: the oldest segment is read from its start (an event may be delivered twice, never lost).
    }
  }

  /** Undelivered bytes, on disk and buffered. */
  bytes(): number {
    let total = this.#bufferBytes - this.#offset;
    for (const s of this.#segments) total += s.bytes;
    return total;
  }

  /** Whether a line of `bytes` more would go over the bound. */
  full(bytes = 0): boolean {
    return this.bytes() + bytes > this.#o.maxBytes;
  }

  /** Queues one line (no newline in it); false when refused (full, fail-closed). */
  append(line: string): boolean {
    const bytes = Buffer.byteLength(line) + 1;
    if (this.full(bytes)) {
      if (this.#o.full === 'fail-closed') {
        this.#o.onDrop(1);
        return false;
      }
      this.#dropOldest(bytes);
    }
    this.#buffer.push(line);
    this.#bufferBytes += bytes;
    if (this.#bufferBytes >= FLUSH_BYTES) this.flush();
    return true;
  }

  /** Writes what is buffered to the newest segment (a new one past the segment size). */
  flush(): void {
    if (this.#buffer.length === 0) return;
    let last = this.#segments.at(-1);
    if (last === undefined || last.bytes >= this.#segmentBytes) {
      last = { n: (last?.n ?? 0) + 1, bytes: 0, lines: 0 };
      this.#segments.push(last);
    }
    const text = `${this.#buffer.join('\n')}\n`;
    const file = this.#file(last.n);
    try {
      appendFileSync(file, text, { mode: 0o600 });
    } catch (err) {
      // A full disk takes a short write: part of a line. Cut the segment back to its whole lines, so
      // that what follows once there is space again never reads as (or ships) a corrupt event.
      try {
        truncateSync(file, last.bytes);
      } catch {
        // Not even created: nothing to cut.
      }
      throw err;
    }
    last.bytes += this.#bufferBytes;
    last.lines += this.#buffer.length;
    this.#buffer = [];
    this.#bufferBytes = 0;
  }

  /** Drops what is buffered (its segment cannot be written); returns how many lines. */
  discardBuffer(): number {
    const n = this.#buffer.length;
    this.#buffer = [];
    this.#bufferBytes = 0;
    return n;
  }

  /** The next undelivered lines of the oldest segment, up to `maxLines` and about `maxBytes`. */
  peek(maxLines: number, maxBytes: number): SpoolBatch | undefined {
    this.flush();
    const first = this.#segments[0];
    if (first === undefined || this.#offset >= first.bytes) return undefined;
    const rest = readFileSync(this.#file(first.n)).subarray(this.#offset);
    const lines: string[] = [];
    let used = 0;
    while (lines.length < maxLines && used < rest.length) {
      const nl = rest.indexOf(0x0a, used);
      if (nl === -1) break;
      if (lines.length > 0 && nl + 1 > maxBytes) break;
      lines.push(rest.subarray(used, nl).toString('utf8'));
      used = nl + 1;
    }
    return lines.length === 0 ? undefined : { lines, segment: first.n, endOffset: this.#offset + used };
  }

  /** The batch was delivered: the read position moves past it (a segment done is deleted). */
  ack(batch: SpoolBatch): void {
    const first = this.#segments[0];
    // Dropped meanwhile (drop-oldest): nothing to move.
    if (first?.n !== batch.segment || batch.endOffset <= this.#offset) return;
    this.#offset = batch.endOffset;
    this.#linesBefore += batch.lines.length;
    if (this.#offset >= first.bytes && this.#segments.length > 1) this.#removeFirst();
    try {
      this.#saveCursor();
    } catch {
      // A full disk: the position is kept in memory and saved at the next ack. A restart before
      // then delivers the batch again (at least once), which is not the collector's failure.
    }
  }

  #dropOldest(needed: number): void {
    while (this.full(needed)) {
      if (this.#segments.length === 0) this.flush();
      const first = this.#segments[0];
      if (first === undefined) return;
      this.#o.onDrop(first.lines - this.#linesBefore);
      this.#removeFirst();
      this.#saveCursor();
    }
  }

  #removeFirst(): void {
    const first = this.#segments.shift();
    if (first !== undefined) rmSync(this.#file(first.n), { force: true });
    this.#offset = 0;
    this.#linesBefore = 0;
  }

  #saveCursor(): void {
    const tmp = join(this.#o.dir, 'cursor.json.tmp');
    writeFileSync(tmp, JSON.stringify({ segment: this.#segments[0]?.n ?? 0, offset: this.#offset }), { mode: 0o600 });
    renameSync(tmp, join(this.#o.dir, 'cursor.json'));
  }

  #file(n: number): string {
    return join(this.#o.dir, `${String(n).padStart(12, '0')}.jsonl`);
  }
}

/** For tests and diagnostics: the spool files' total size. */
export function spoolDiskBytes(dir: string): number {
  return readdirSync(dir).reduce((n, f) => n + (f.endsWith('.jsonl') ? statSync(join(dir, f)).size : 0), 0);
}
