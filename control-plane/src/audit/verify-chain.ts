import type { X509Certificate } from 'node:crypto';
import { GENESIS_PREV_HASH, hashEvent } from './canonical.ts';
import { checkpointSignatureProblem } from './checkpoint-signature.ts';
import { AUDIT_SCHEMA_VERSION, type ChainLink, type CheckpointSignature } from './event.ts';

/** Where an audit line is: a file and its line number (from 1). */
export interface LineRef {
  readonly file: string;
  readonly line: number;
}

/** The first place a chain does not hold, and why. */
export interface ChainBreak extends LineRef {
  readonly chain?: string;
  readonly seq?: number;
  readonly what: string;
}

export interface ChainSummary {
  readonly chain: string;
  readonly replica: string;
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly checkpoints: number;
  /** Events after the last checkpoint: vouched for by the chain only, not by a signature. */
  readonly unsigned: number;
}

export interface VerifyResult {
  /** Audit events read (other lines are ignored). */
  readonly events: number;
  readonly chains: readonly ChainSummary[];
  readonly broken?: ChainBreak;
  readonly warnings: readonly string[];
}

export interface VerifyOptions {
  /** The roots checkpoint signers must chain to (the control plane's trust bundle). */
  readonly roots: readonly X509Certificate[];
  /** Logs that do not hold a chain from its start (rotated away): a chain may begin at any seq, and a previous chain named may be absent. */
  readonly partial?: boolean;
}

interface ChainState {
  readonly chain: string;
  replica: string;
  readonly firstSeq: number;
  seq: number;
  hash: string;
  at: LineRef;
  checkpoints: number;
  unsigned: number;
  /** Hash by seq of each checkpoint: what a later chain's start may name. */
  readonly checkpointHashes: Map<number, string>;
  readonly previous?: { readonly link: ChainLink; readonly at: LineRef };
}

/** A parsed line's `audit` field, checked for the fields the chain needs. */
interface ChainedEvent {
  readonly schemaVersion: number;
  readonly chain: string;
  readonly seq: number;
  readonly prevHash: string;
  readonly kind: string;
  readonly time: string;
  readonly replica: string;
  readonly previous?: ChainLink;
  readonly signature?: CheckpointSignature;
}

const where = (at: LineRef): string => `${at.file}:${at.line}`;

function malformed(e: Record<string, unknown>): string | undefined {
  if (e.schemaVersion !== AUDIT_SCHEMA_VERSION) return `schemaVersion ${JSON.stringify(e.schemaVersion)} is not ${AUDIT_SCHEMA_VERSION}`;
  for (const k of ['chain', 'prevHash', 'kind', 'time', 'replica'] as const) if (typeof e[k] !== 'string') return `it has no ${k}`;
  if (!Number.isSafeInteger(e.seq) || (e.seq as number) < 0) return 'it has no seq';
  if (e.kind === 'checkpoint') {
    const s = e.signature as Partial<CheckpointSignature> | null | undefined;
    if (typeof s !== 'object' || s === null || typeof s.alg !== 'string' || typeof s.value !== 'string' || !Array.isArray(s.certificates) || !s.certificates.every((c) => typeof c === 'string')) return 'its signature is malformed';
  }
  return undefined;
}

/**
 * Checks audit chains line by line (pino lines; lines without an `audit` event are ignored): each
 * chain starts at seq 0 with a chain-start, its seqs follow one another, each event's prevHash is
 * the hash of the event before, each checkpoint's signature holds, and a chain-start naming a
 * previous chain matches that chain's checkpoint. The first break ends the check. Fed a line at a
 * time, so that logs of any size are read as a stream.
 */
export class AuditChainVerifier {
  readonly #o: VerifyOptions;
  readonly #chains = new Map<string, ChainState>();
  readonly #warnings: string[] = [];
  #events = 0;
  #broken: ChainBreak | undefined;

  constructor(o: VerifyOptions) {
    this.#o = o;
  }

  /** The first break so far, if any. */
  get broken(): ChainBreak | undefined {
    return this.#broken;
  }

  /** Checks line `lineNo` (from 1) of `file`; returns the break it makes, if any. */
  line(file: string, lineNo: number, line: string): ChainBreak | undefined {
    if (this.#broken !== undefined) return this.#broken;
    this.#broken = this.#check({ file, line: lineNo }, line);
    return this.#broken;
  }

  /** The result once every line was given: the checks that need all of them, then the summary. */
  finish(): VerifyResult {
    if (this.#broken === undefined) {
      for (const c of this.#chains.values()) {
        if (c.previous !== undefined) {
          const before = this.#chains.get(c.previous.link.chain);
          if (before === undefined) {
            if (this.#o.partial !== true) {
              this.#broken = { ...c.previous.at, chain: c.chain, seq: 0, what: `the previous chain it names (${c.previous.link.chain}, up to seq ${c.previous.link.seq}) is not in the input` };
              break;
            }
            this.#warnings.push(`chain ${c.chain} names a previous chain ${c.previous.link.chain} that is not in the input`);
          } else if (before.checkpointHashes.get(c.previous.link.seq) !== c.previous.link.hash) {
            this.#broken = { ...c.previous.at, chain: c.chain, seq: 0, what: `the previous chain it names (${c.previous.link.chain}) has no checkpoint at seq ${c.previous.link.seq} with hash ${c.previous.link.hash}` };
            break;
          }
        }
        if (c.unsigned > 0) this.#warnings.push(`chain ${c.chain} (replica ${c.replica}): the last ${c.unsigned} event(s), up to seq ${c.seq}, come after its last signed checkpoint`);
      }
    }
    return {
      events: this.#events,
      chains: [...this.#chains.values()].map((c) => ({ chain: c.chain, replica: c.replica, firstSeq: c.firstSeq, lastSeq: c.seq, checkpoints: c.checkpoints, unsigned: c.unsigned })),
      ...(this.#broken === undefined ? {} : { broken: this.#broken }),
      warnings: this.#warnings,
    };
  }

  #check(at: LineRef, line: string): ChainBreak | undefined {
    // Most lines of a mixed log are not audit events: only those naming the field are parsed.
    if (!line.includes('"audit"')) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      return line.includes('"schemaVersion"') ? { ...at, what: 'an audit line that is not JSON (altered or cut)' } : undefined;
    }
    const raw = typeof parsed === 'object' && parsed !== null ? (parsed as { audit?: unknown }).audit : undefined;
    if (typeof raw !== 'object' || raw === null) return undefined;
    const problem = malformed(raw as Record<string, unknown>);
    if (problem !== undefined) return { ...at, what: `a malformed audit event: ${problem}` };
    const e = raw as ChainedEvent;
    this.#events++;
    const hash = hashEvent(e);
    let state = this.#chains.get(e.chain);
    if (state === undefined) {
      if (e.seq !== 0 || e.kind !== 'chain-start' || e.prevHash !== GENESIS_PREV_HASH) {
        if (this.#o.partial !== true) return { ...at, chain: e.chain, seq: e.seq, what: `chain ${e.chain} begins at seq ${e.seq}: the events before it are missing (or moved after it)` };
        this.#warnings.push(`chain ${e.chain} begins at seq ${e.seq} (${where(at)}): its earlier events are not in the input`);
      }
      state = { chain: e.chain, replica: e.replica, firstSeq: e.seq, seq: e.seq, hash, at, checkpoints: 0, unsigned: 0, checkpointHashes: new Map(), ...(e.previous === undefined ? {} : { previous: { link: e.previous, at } }) };
      this.#chains.set(e.chain, state);
    } else {
      if (e.seq !== state.seq + 1) {
        const what = e.seq <= state.seq ? `seq ${e.seq} comes after seq ${state.seq} (${where(state.at)}): an event was duplicated or moved` : `seq ${e.seq} follows seq ${state.seq} (${where(state.at)}): ${e.seq - state.seq - 1} event(s) missing or moved`;
        return { ...at, chain: e.chain, seq: e.seq, what };
      }
      if (e.prevHash !== state.hash) {
        return { ...state.at, chain: e.chain, seq: state.seq, what: `seq ${state.seq} was altered: it does not hash to the prevHash of seq ${e.seq} (${where(at)})` };
      }
      state.seq = e.seq;
      state.hash = hash;
      state.at = at;
    }
    if (e.kind === 'checkpoint' && e.signature !== undefined) {
      const bad = checkpointSignatureProblem({ ...(e as unknown as { time: string }), signature: e.signature }, this.#o.roots);
      if (bad !== undefined) return { ...at, chain: e.chain, seq: e.seq, what: `checkpoint not valid: ${bad}` };
      state.checkpoints++;
      state.unsigned = 0;
      state.checkpointHashes.set(e.seq, hash);
    } else {
      state.unsigned++;
    }
    return undefined;
  }
}

/** AuditChainVerifier over whole texts (tests, small inputs). */
export function verifyAuditChains(files: readonly { readonly name: string; readonly text: string }[], o: VerifyOptions): VerifyResult {
  const v = new AuditChainVerifier(o);
  for (const { name, text } of files) {
    const lines = text.split('\n');
    for (let i = 0; i < lines.length && v.line(name, i + 1, lines[i] ?? '') === undefined; i++);
  }
  return v.finish();
}
