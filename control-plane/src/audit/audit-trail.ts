import { readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { jsonFieldWriter, type Logger } from '@airlock/common/logging';
import { errorMessage } from '@airlock/common/errors';
import { hash as digest, randomUUID } from 'node:crypto';
import { GENESIS_PREV_HASH, hashEvent } from './canonical.ts';
import { signCheckpoint, signCheckpointAsync, type CheckpointSigner } from './checkpoint-signature.ts';
import type { AuditSink } from './spooled-sink.ts';
import { AUDIT_SCHEMA_VERSION, type AdminRecord, type AnomalyRecord, type AuditEvent, type AuditKind, type AuditLog, type ChainLink, type CheckpointSignature, type DecisionRecord, type RefusalRecord } from './event.ts';

export interface AuditTrailOptions {
  /** Where each event goes, as the `audit` field of a line (a logger at level info or below, without redaction: events carry no secret). */
  readonly logger: Logger;
  /** Diagnostics about the trail itself (a checkpoint that could not be signed). */
  readonly log: Logger;
  /** This control plane's name in every event (several replicas write several chains). */
  readonly replica: string;
  /** The key checkpoints are signed with, once there is one (the serving key exists after the CA opens). */
  readonly signer: () => CheckpointSigner | undefined;
  /** A checkpoint after this many events … */
  readonly checkpointEvery: number;
  /** … or this long after the previous one, if any event came since. */
  readonly checkpointIntervalMs: number;
  /** Where the last checkpoint's link is kept, so the chain of the next start names it. */
  readonly stateFile?: string;
  /** Where events are shipped besides the log (a SIEM collector), each event's JSON in chain order. */
  readonly sinks?: readonly AuditSink[];
}

const MESSAGES: Record<AuditKind, string> = {
  decision: 'authorization decision',
  refusal: 'request refused',
  admin: 'admin action',
  anomaly: 'behaviour anomaly',
  'chain-start': 'audit chain started',
  checkpoint: 'audit checkpoint',
};

function readLink(file: string | undefined): ChainLink | undefined {
  if (file === undefined) return undefined;
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as Partial<ChainLink>;
    if (typeof v.chain === 'string' && Number.isSafeInteger(v.seq) && typeof v.hash === 'string' && /^[0-9a-f]{64}$/.test(v.hash)) return { chain: v.chain, seq: v.seq as number, hash: v.hash };
  } catch {
    // First start, or an unreadable file: the new chain names no previous one.
  }
  return undefined;
}

type Envelope = Pick<AuditEvent, 'schemaVersion' | 'id' | 'time' | 'replica' | 'chain' | 'seq' | 'prevHash'>;
/** A checkpoint event but its signature. */
type UnsignedCheckpoint = Envelope & { readonly kind: 'checkpoint' };

/**
 * A decision event (the hot path: one per call) built with its keys, and its mcp's, in RFC 8785
 * order, so that JSON.stringify writes its canonical form: hashing it needs no sorting pass. Every
 * chain the tests verify (with canonicalJson) checks this order.
 */
export function decisionEvent(e: Envelope, r: DecisionRecord): AuditEvent {
  const m = r.mcp;
  const a = r.approval;
  return {
    approval: a === undefined ? undefined : { binding: a.binding, by: a.by, id: a.id, reason: a.reason, state: a.state },
    chain: e.chain,
    decisionId: r.decisionId,
    destination: r.destination,
    destinationSegments: r.destinationSegments,
    direction: r.direction,
    host: r.host,
    id: e.id,
    inspected: r.inspected,
    kind: 'decision',
    latencyMs: r.latencyMs,
    mcp: m === undefined ? undefined : { allowedTools: m.allowedTools, arguments: m.arguments?.map((a) => ({ path: a.path, value: a.value })), headerMismatch: m.headerMismatch, listedTools: m.listedTools, method: m.method, tool: m.tool, toolPins: m.toolPins?.map((f) => ({ action: f.action, change: f.change, detectors: f.detectors, note: f.note, pinned: f.pinned, seen: f.seen, tool: f.tool })), unreadable: m.unreadable },
    method: r.method,
    mode: r.mode,
    path: r.path,
    policy: r.policy,
    policyVersion: r.policyVersion,
    port: r.port,
    prevHash: e.prevHash,
    rateLimit: r.rateLimit === undefined ? undefined : { mode: r.rateLimit.mode, name: r.rateLimit.name, per: r.rateLimit.per, retryAfterMs: r.rateLimit.retryAfterMs },
    reason: r.reason,
    replica: e.replica,
    rule: r.rule,
    schemaVersion: e.schemaVersion,
    secrets: r.secrets?.map((f) => ({ detector: f.detector, field: f.field })),
    seq: e.seq,
    source: r.source,
    sourceSegments: r.sourceSegments,
    threat: r.threat === undefined ? undefined : { entry: r.threat.entry, feed: r.threat.feed, version: r.threat.version },
    time: e.time,
    tls: r.tls,
    verdict: r.verdict,
  };
}

/**
 * The audit trail of one control plane process: every producer records typed events here, each
 * written as one log line `{"audit": event, …}` and linked into a hash chain (seq, prevHash =
 * SHA-256 of the previous event's canonical JSON), with a signed checkpoint every
 * `checkpointEvery` events or `checkpointIntervalMs`, and one when closed. A process start is a
 * new chain whose first event names the previous chain's last checkpoint (kept in `stateFile`).
 */
export class AuditTrail implements AuditLog {
  readonly #o: AuditTrailOptions;
  readonly #sinks: readonly AuditSink[];
  readonly #chain = randomUUID();
  #seq = 0;
  #prevHash = GENESIS_PREV_HASH;
  #sinceCheckpoint = 0;
  readonly #timer: NodeJS.Timeout;
  // An ISO time formatted at most once per millisecond (one event per decision).
  #timeMs = -1;
  #timeIso = '';
  /** A decision's line from the JSON already made to hash it (not serialized twice). */
  readonly #decisionLine: (json: string) => void;
  /** The checkpoint being signed on the thread pool, and the events recorded meanwhile (linked after it, in order). */
  #signing: Signing | undefined;
  /** The state file's writes, one after the other. */
  #stateWrite: Promise<void> = Promise.resolve();

  constructor(o: AuditTrailOptions) {
    this.#o = o;
    this.#decisionLine = jsonFieldWriter(o.logger, 'audit', MESSAGES.decision);
    this.#sinks = o.sinks ?? [];
    const previous = readLink(o.stateFile);
    this.#append('chain-start', previous === undefined ? {} : { previous });
    this.#timer = setInterval(() => {
      if (this.#sinceCheckpoint > 0) this.checkpoint();
    }, o.checkpointIntervalMs);
    this.#timer.unref();
    finishOnExit(this);
  }

  decision(record: DecisionRecord): void {
    const signing = this.#signing;
    if (signing !== undefined) {
      const time = this.#time();
      signing.waiting.push(() => this.#decision(record, time));
      return;
    }
    this.#decision(record, this.#time());
  }

  refusal(record: RefusalRecord): void {
    this.#append('refusal', record);
  }

  admin(record: AdminRecord): void {
    this.#append('admin', record);
  }

  anomaly(record: AnomalyRecord): void {
    this.#append('anomaly', record);
  }

  /**
   * Starts a signed checkpoint (unless no key is held yet: the next event tries again, or one is
   * being signed). Its place in the chain is taken now; it is signed on libuv's thread pool, and
   * events recorded meanwhile are linked after it once its hash is known.
   */
  checkpoint(): void {
    if (this.#signing !== undefined) return;
    const signer = this.#o.signer();
    if (signer === undefined) return;
    const unsigned = this.#envelope('checkpoint', this.#time());
    const signing: Signing = { unsigned, signer, waiting: [], done: Promise.resolve() };
    this.#signing = signing;
    this.#sinceCheckpoint = 0;
    signing.done = signCheckpointAsync(unsigned, signer).then(
      (signature) => this.#signed(signing, { signature }),
      (error: unknown) => this.#signed(signing, { error }),
    );
  }

  /** Finishes the checkpoints being signed now, on this thread, until no event waits (at exit; tests). */
  finishSync(): void {
    for (let signing = this.#pending(); signing !== undefined; signing = this.#pending()) {
      let signed: Signed;
      try {
        signed = { signature: signCheckpoint(signing.unsigned, signing.signer) };
      } catch (error) {
        signed = { error };
      }
      this.#signed(signing, signed);
    }
  }

  accepting(): boolean {
    // Events waiting for a checkpoint's signature are held in memory: bounded (the thread pool stuck), then refused as a full spool is.
    if (this.#signing !== undefined && this.#signing.waiting.length >= MAX_WAITING) return false;
    return this.#sinks.every((s) => s.accepting());
  }

  /** Resolves once no checkpoint is being signed (the events that waited for one may start the next: that one too). */
  async settled(): Promise<void> {
    for (let signing = this.#pending(); signing !== undefined; signing = this.#pending()) await signing.done;
  }

  /** A last checkpoint (the chain's tail is then signed), then the sinks closed; nothing is recorded after. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    // Until the tail is signed (or no key is held).
    for (;;) {
      await this.settled();
      if (this.#sinceCheckpoint === 0) break;
      this.checkpoint();
      if (this.#pending() === undefined) break;
    }
    open.delete(this);
    await this.#stateWrite;
    for (const s of this.#sinks) await s.close();
  }

  /** The checkpoint is signed (or could not be): it is written, then the events that waited for it are linked. */
  #signed(signing: Signing, signed: Signed): void {
    if (this.#signing !== signing) return; // already finished (synchronously, at exit)
    this.#signing = undefined;
    if ('signature' in signed) {
      const event: AuditEvent = { ...signing.unsigned, signature: signed.signature };
      const hash = hashEvent(event);
      this.#write(event, hash);
      this.#keepLink({ chain: this.#chain, seq: event.seq, hash });
    } else {
      // Its place is given back: the next event takes its seq.
      this.#o.log.error({ error: errorMessage(signed.error) }, 'audit checkpoint cannot be signed');
    }
    const waiting = signing.waiting;
    for (let i = 0; i < waiting.length; i++) {
      const next = this.#pending();
      // One of them started the next checkpoint: the rest wait for that one, in order.
      if (next !== undefined) {
        next.waiting = waiting.slice(i).concat(next.waiting);
        return;
      }
      waiting[i]?.();
    }
  }

  /** The checkpoint being signed, if any (a method: the events run above may have started one). */
  #pending(): Signing | undefined {
    return this.#signing;
  }

  /** The state file names the last checkpoint: written aside, then renamed over, so a crash leaves the previous one whole. */
  #keepLink(link: ChainLink): void {
    const file = this.#o.stateFile;
    if (file === undefined) return;
    this.#stateWrite = this.#stateWrite.then(async () => {
      try {
        await writeFile(`${file}.tmp`, JSON.stringify(link), { mode: 0o600 });
        await rename(`${file}.tmp`, file);
      } catch (err) {
        this.#o.log.warn({ error: errorMessage(err), file }, 'cannot keep the audit chain link: the next start will name no previous chain');
      }
    });
  }

  #decision(record: DecisionRecord, time: string): void {
    const event = decisionEvent(this.#envelope('decision', time), record);
    const json = JSON.stringify(event);
    this.#write(event, digest('sha256', json), json);
    if (++this.#sinceCheckpoint >= this.#o.checkpointEvery) this.checkpoint();
  }

  #time(): string {
    const now = Date.now();
    if (now !== this.#timeMs) {
      this.#timeMs = now;
      this.#timeIso = new Date(now).toISOString();
    }
    return this.#timeIso;
  }

  #envelope<K extends AuditKind>(kind: K, time: string): { schemaVersion: typeof AUDIT_SCHEMA_VERSION; id: string; time: string; kind: K; replica: string; chain: string; seq: number; prevHash: string } {
    return { schemaVersion: AUDIT_SCHEMA_VERSION, id: randomUUID(), time, kind, replica: this.#o.replica, chain: this.#chain, seq: this.#seq, prevHash: this.#prevHash };
  }

  #append(kind: 'refusal', record: RefusalRecord): void;
  #append(kind: 'admin', record: AdminRecord): void;
  #append(kind: 'anomaly', record: AnomalyRecord): void;
  #append(kind: 'chain-start', record: { previous?: ChainLink }): void;
  #append(kind: AuditKind, record: object): void {
    const time = this.#time();
    const append = (): void => {
      const event = { ...this.#envelope(kind, time), ...record } as AuditEvent;
      this.#write(event, hashEvent(event));
      if (++this.#sinceCheckpoint >= this.#o.checkpointEvery) this.checkpoint();
    };
    const signing = this.#pending();
    if (signing !== undefined) signing.waiting.push(append);
    else append();
  }

  /** Links the event (of hash `hash`, and `json` for a decision) in, writes it and hands it to the sinks. */
  #write(event: AuditEvent, hash: string, json?: string): void {
    this.#seq++;
    this.#prevHash = hash;
    if (json !== undefined) this.#decisionLine(json);
    else this.#o.logger.info({ audit: event }, MESSAGES[event.kind]);
    if (this.#sinks.length === 0) return;
    const line = json ?? JSON.stringify(event);
    for (const s of this.#sinks) s.submit(line);
  }
}

/** The trails not closed yet: on exit (an uncaught error, process.exit) their checkpoints being signed are finished synchronously, so no event waits unwritten. */
const open = new Set<AuditTrail>();
let exitListener = false;

function finishOnExit(trail: AuditTrail): void {
  open.add(trail);
  if (exitListener) return;
  exitListener = true;
  // Before the log destination's own exit flush (registered when the logger was made), so that what this writes is flushed too.
  process.prependListener('exit', () => {
    for (const t of open) t.finishSync();
  });
}

/** Events held at most while a checkpoint is signed (~1 ms of them at full rate): past it decisions are refused. */
const MAX_WAITING = 100_000;

interface Signing {
  readonly unsigned: UnsignedCheckpoint;
  readonly signer: CheckpointSigner;
  waiting: (() => void)[];
  done: Promise<void>;
}

type Signed = { readonly signature: CheckpointSignature } | { readonly error: unknown };
