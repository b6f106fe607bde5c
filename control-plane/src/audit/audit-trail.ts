import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Logger } from '@airlock/common/logging';
import { errorMessage } from '@airlock/common/errors';
import { hash as digest, randomUUID } from 'node:crypto';
import { GENESIS_PREV_HASH, hashEvent } from './canonical.ts';
import { signCheckpoint, type CheckpointSigner } from './checkpoint-signature.ts';
import type { AuditSink } from './spooled-sink.ts';
import { AUDIT_SCHEMA_VERSION, type AdminRecord, type AnomalyRecord, type AuditEvent, type AuditKind, type AuditLog, type ChainLink, type DecisionRecord, type RefusalRecord } from './event.ts';

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
    seq: e.seq,
    source: r.source,
    sourceSegments: r.sourceSegments,
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

  constructor(o: AuditTrailOptions) {
    this.#o = o;
    this.#sinks = o.sinks ?? [];
    const previous = readLink(o.stateFile);
    this.#append('chain-start', previous === undefined ? {} : { previous });
    this.#timer = setInterval(() => {
      if (this.#sinceCheckpoint > 0) this.checkpoint();
    }, o.checkpointIntervalMs);
    this.#timer.unref();
  }

  decision(record: DecisionRecord): void {
    const event = decisionEvent(this.#envelope('decision'), record);
    const json = JSON.stringify(event);
    this.#write(event, digest('sha256', json), json);
    if (++this.#sinceCheckpoint >= this.#o.checkpointEvery) this.checkpoint();
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

  /** Writes a signed checkpoint now (unless no key is held yet: the next event tries again). */
  checkpoint(): void {
    const signer = this.#o.signer();
    if (signer === undefined) return;
    const unsigned = this.#envelope('checkpoint');
    let event: AuditEvent;
    try {
      event = { ...unsigned, signature: signCheckpoint(unsigned, signer) };
    } catch (err) {
      this.#o.log.error({ error: errorMessage(err) }, 'audit checkpoint cannot be signed');
      return;
    }
    const hash = hashEvent(event);
    this.#write(event, hash);
    this.#sinceCheckpoint = 0;
    if (this.#o.stateFile !== undefined) {
      try {
        writeFileSync(`${this.#o.stateFile}.tmp`, JSON.stringify({ chain: this.#chain, seq: event.seq, hash } satisfies ChainLink), { mode: 0o600 });
        renameSync(`${this.#o.stateFile}.tmp`, this.#o.stateFile);
      } catch (err) {
        this.#o.log.warn({ error: errorMessage(err), file: this.#o.stateFile }, 'cannot keep the audit chain link: the next start will name no previous chain');
      }
    }
  }

  accepting(): boolean {
    return this.#sinks.every((s) => s.accepting());
  }

  /** A last checkpoint (the chain's tail is then signed), then the sinks closed; nothing is recorded after. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    if (this.#sinceCheckpoint > 0) this.checkpoint();
    for (const s of this.#sinks) await s.close();
  }

  #envelope<K extends AuditKind>(kind: K): { schemaVersion: typeof AUDIT_SCHEMA_VERSION; id: string; time: string; kind: K; replica: string; chain: string; seq: number; prevHash: string } {
    const now = Date.now();
    if (now !== this.#timeMs) {
      this.#timeMs = now;
      this.#timeIso = new Date(now).toISOString();
    }
    return { schemaVersion: AUDIT_SCHEMA_VERSION, id: randomUUID(), time: this.#timeIso, kind, replica: this.#o.replica, chain: this.#chain, seq: this.#seq, prevHash: this.#prevHash };
  }

  #append(kind: 'refusal', record: RefusalRecord): void;
  #append(kind: 'admin', record: AdminRecord): void;
  #append(kind: 'anomaly', record: AnomalyRecord): void;
  #append(kind: 'chain-start', record: { previous?: ChainLink }): void;
  #append(kind: AuditKind, record: object): void {
    const event = { ...this.#envelope(kind), ...record } as AuditEvent;
    this.#write(event, hashEvent(event));
    if (++this.#sinceCheckpoint >= this.#o.checkpointEvery) this.checkpoint();
  }

  /** Links the event (of hash `hash`) in, writes it and hands it to the sinks. */
  #write(event: AuditEvent, hash: string, json?: string): void {
    this.#seq++;
    this.#prevHash = hash;
    this.#o.logger.info({ audit: event }, MESSAGES[event.kind]);
    if (this.#sinks.length === 0) return;
    const line = json ?? JSON.stringify(event);
    for (const s of this.#sinks) s.submit(line);
  }
}
