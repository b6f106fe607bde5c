import { errorMessage } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import { Counter, Gauge, type Registry } from 'prom-client';
import { Spool, type SpoolFullPolicy } from './spool.ts';

/** Where audit events go besides stdout: each takes every event's JSON, in chain order. */
export interface AuditSink {
  /** Queues one event (never blocks the decision). */
  submit(json: string): void;
  /** False while events cannot be queued (spool full, fail-closed): decisions are then refused. */
  accepting(): boolean;
  /** Writes what is queued to the spool (delivered after a restart if not before). */
  close(): Promise<void>;
}

export interface AuditSinkMetrics {
  readonly dropped: Counter<'sink' | 'reason'>;
  readonly delivered: Counter<'sink'>;
  readonly spoolBytes: Gauge<'sink'>;
}

/** The audit sinks' metrics, once per registry. */
export function createAuditSinkMetrics(registry: Registry): AuditSinkMetrics {
  const registers = [registry];
  return {
    dropped: new Counter({ name: 'airlock_audit_events_dropped_total', help: 'Audit events a sink lost, by reason: spool_full (drop-oldest drops the oldest, fail-closed the new ones), spool_error (the spool could not be written).', labelNames: ['sink', 'reason'] as const, registers }),
    delivered: new Counter({ name: 'airlock_audit_events_delivered_total', help: 'Audit events a sink delivered (acknowledged by the collector).', labelNames: ['sink'] as const, registers }),
    spoolBytes: new Gauge({ name: 'airlock_audit_spool_bytes', help: 'Bytes of audit events spooled on disk, not yet delivered.', labelNames: ['sink'] as const, registers }),
  };
}

/** How a batch reaches a collector: resolves once the collector has it. */
export interface AuditTransport {
  /** The sink's name in metrics, logs and its spool directory (`http`, `syslog`). */
  readonly name: string;
  send(lines: readonly string[]): Promise<void>;
  /** Ends a connection it keeps (called once the sink is closed). */
  close?(): void;
}

export interface SpooledSinkOptions {
  readonly transport: AuditTransport;
  readonly spoolDir: string;
  readonly spoolMaxBytes: number;
  readonly full: SpoolFullPolicy;
  readonly metrics: AuditSinkMetrics;
  readonly log: Logger;
  readonly batchEvents?: number;
  readonly batchBytes?: number;
  /** Backoff after a failed batch: from min, doubled each failure, up to max (with jitter). */
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** How long events are buffered before they are written to the spool. */
  readonly flushMs?: number;
}

/**
 * Ships audit events to a collector (its transport) in batches, through a bounded on-disk spool:
 * a collector down for minutes loses nothing (the batch is retried with exponential backoff, the
 * spool holds what comes meanwhile); when the spool is full, `drop-oldest` drops the oldest events
 * and `fail-closed` refuses new ones (then `accepting()` is false and decisions are refused); both
 * are counted (airlock_audit_events_dropped_total) and logged.
 */
export class SpooledAuditSink implements AuditSink {
  readonly #o: SpooledSinkOptions;
  readonly #sink: string;
  readonly #spool: Spool;
  readonly #flush: NodeJS.Timeout;
  /** Wakes the sender waiting for events (not one backing off). */
  #wake: (() => void) | undefined;
  /** Ends a backoff early: only when closing. */
  #stopWaiting: (() => void) | undefined;
  #closed = false;
  #backoffMs = 0;
  readonly #running: Promise<void>;
  #droppedSinceLog = 0;
  /** fail-closed: an event was refused, and nothing was delivered since. */
  #refusing = false;

  constructor(o: SpooledSinkOptions) {
    this.#o = o;
    this.#sink = o.transport.name;
        this.#spool = new Spool({
      dir: o.spoolDir,
      maxBytes: o.spoolMaxBytes,
      full: o.full,
      onDrop: (n) => {
        if (o.full === 'fail-closed') this.#refusing = true;
        o.metrics.dropped.inc({ sink: this.#sink, reason: 'spool_full' }, n);
        // Logged once per burst: the counter has them all.
        if (this.#droppedSinceLog === 0) o.log.error({ sink: this.#sink, policy: o.full, spoolMaxBytes: o.spoolMaxBytes }, `audit spool full: ${o.full === 'fail-closed' ? 'new events refused, decisions refused until it drains' : 'oldest events dropped'}`);
        this.#droppedSinceLog += n;
      },
    });
    o.metrics.spoolBytes.set({ sink: this.#sink }, this.#spool.bytes());
    this.#flush = setInterval(() => this.#tick(), o.flushMs ?? 50);
    this.#flush.unref();
    this.#running = this.#run();
  }

  submit(json: string): void {
    try {
      this.#spool.append(json);
    } catch (err) {
      this.#spoolFailed(err, Math.max(1, this.#spool.discardBuffer()));
    }
  }

  /** The spool's disk failed (full, read-only): the events are lost, counted and logged, never the decision. */
  #spoolFailed(err: unknown, events: number): void {
    if (this.#o.full === 'fail-closed') this.#refusing = true;
    this.#o.metrics.dropped.inc({ sink: this.#sink, reason: 'spool_error' }, events);
    if (this.#droppedSinceLog === 0) this.#o.log.error({ sink: this.#sink, error: errorMessage(err) }, 'audit spool cannot be written: events dropped');
    this.#droppedSinceLog += events;
  }

  accepting(): boolean {
    return !this.#refusing;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#flush);
    this.#wake?.();
    this.#stopWaiting?.();
    await this.#running;
    this.#o.transport.close?.();
    this.#spool.flush();
  }

  #tick(): void {
    try {
      this.#spool.flush();
    } catch (err) {
      this.#spoolFailed(err, this.#spool.discardBuffer());
    }
    this.#o.metrics.spoolBytes.set({ sink: this.#sink }, this.#spool.bytes());
    this.#wake?.();
  }

  /** The next batch; a spool that cannot be written (peek writes the buffer first) loses those events, counted, not a delivery failure: no backoff. */
  #peek(): ReturnType<Spool['peek']> {
    try {
      return this.#spool.peek(this.#o.batchEvents ?? 500, this.#o.batchBytes ?? 1024 * 1024);
    } catch (err) {
      this.#spoolFailed(err, this.#spool.discardBuffer());
      return undefined;
    }
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      try {
        const batch = this.#peek();
        if (batch === undefined) {
          await new Promise<void>((resolve) => (this.#wake = resolve));
          this.#wake = undefined;
          continue;
        }
        await this.#o.transport.send(batch.lines);
        this.#spool.ack(batch);
        this.#refusing = false;
        this.#o.metrics.delivered.inc({ sink: this.#sink }, batch.lines.length);
        this.#o.metrics.spoolBytes.set({ sink: this.#sink }, this.#spool.bytes());
        if (this.#backoffMs > 0 || this.#droppedSinceLog > 0) this.#o.log.info({ sink: this.#sink, dropped: this.#droppedSinceLog }, 'audit collector reachable again');
        this.#backoffMs = 0;
        this.#droppedSinceLog = 0;
      } catch (err) {
        const min = this.#o.minBackoffMs ?? 250;
        this.#backoffMs = Math.min(this.#o.maxBackoffMs ?? 30_000, this.#backoffMs === 0 ? min : this.#backoffMs * 2);
        this.#o.log.warn({ sink: this.#sink, error: errorMessage(err), retryInMs: this.#backoffMs, spoolBytes: this.#spool.bytes() }, 'audit batch not delivered; retrying');
        const wait = this.#backoffMs * (0.75 + Math.random() / 2);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, wait);
          this.#stopWaiting = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.#stopWaiting = undefined;
      }
    }
  }
}
