import { AirlockError, ErrorCode } from '@airlock/common/errors';
import type { AuditLog } from '../audit/event.ts';
import type { DecisionState } from '../authz/decision-state.ts';
import type { PolicyVersionRecord, Store } from '../store/store.ts';
import { entryKey, mergeEntries, prepareChange, readBack, type PolicySnapshot, type PreparedChange, type ReadEntry } from './change.ts';
import { diffEntries, type DocumentChange } from './diff.ts';
import { PolicyEngine } from './engine.ts';
import { policyInvalid, type ParsedDocument, type PolicyEntry } from './load.ts';
import type { RateLimitDoc } from './rate-limit-doc.ts';
import type { BaselineDoc } from './baseline-doc.ts';
import type { PolicyDoc, SegmentDoc } from './types.ts';
import { FILE_LIMITS } from './yaml-limits.ts';
import { keepQuarantinedSegments } from '../incident/quarantine-target.ts';
import type { ThreatFeedDoc } from '../threat-feeds/document.ts';

export interface ChangeResult {
  /** The version in force after the operation (unchanged when nothing changed). */
  readonly version: number;
  readonly changed: boolean;
  readonly changes: readonly DocumentChange[];
}

export type DocumentKind = PolicyEntry['kind'];

export interface PolicyStoreOptions {
  readonly store: Store;
  /** Where decisions read the compiled policy: published whole on every version. */
  readonly decisions: DecisionState;
  readonly trustDomain: string;
  readonly audit: AuditLog;
  /** Told the ThreatFeed documents of every version put in force (ThreatFeeds loads them). */
  readonly threatFeeds?: { configure(docs: readonly ThreatFeedDoc[]): void };
}

/**
 * The versioned policy set: every change (apply, delete, rollback) is validated as a whole, stored
 * as version N+1 with its audit event in one transaction, then the compiled engine is swapped, so
 * the next decision follows it. A bad change throws before anything is stored or swapped.
 *
 * The validated documents of the version in force stay in memory beside their stored YAML, so a
 * change parses only the documents it brings (and the engine is compiled from what is stored).
 */
export class PolicyStore {
  readonly #store: Store;
  readonly #decisions: DecisionState;
  /** Changes are made one at a time: each is read against, and numbered after, the one before. */
  #changing: Promise<unknown> = Promise.resolve();
  readonly #trustDomain: string;
  readonly #audit: AuditLog;
  readonly #threatFeeds: PolicyStoreOptions['threatFeeds'];
  #entries: readonly PolicyEntry[];
  /** `#entries[i]` validated, read back from its stored YAML. */
  #docs: readonly ParsedDocument[];
  #engine: PolicyEngine;

  private constructor(o: PolicyStoreOptions, latest: PolicyVersionRecord | undefined) {
    this.#store = o.store;
    this.#decisions = o.decisions;
    this.#trustDomain = o.trustDomain;
    this.#audit = o.audit;
    this.#threatFeeds = o.threatFeeds;
    // Nothing in force yet to reuse: every stored document is read.
    this.#entries = [];
    this.#docs = [];
    const entries = latest === undefined ? [] : entriesOf(latest);
    this.#docs = latest === undefined ? [] : this.#documents(entries, latest.version, []);
    this.#entries = entries;
    this.#engine = latest === undefined ? PolicyEngine.empty(o.trustDomain) : this.#compile(this.#docs, latest.version);
    this.#decisions.replace({ engine: this.#engine });
    this.#threatFeeds?.configure(threatFeedsOf(this.#docs));
  }

  /** The policy set in force from the store's latest version. */
  static async open(o: PolicyStoreOptions): Promise<PolicyStore> {
    return new PolicyStore(o, await o.store.latestPolicyVersion());
  }

  /** The engine in force; read per decision. */
  engine(): PolicyEngine {
    return this.#engine;
  }

  version(): number {
    return this.#engine.version;
  }

  entries(): readonly PolicyEntry[] {
    return this.#entries;
  }

  /** The set in force, for a change computed elsewhere (the admin API's policy worker). */
  snapshot(): PolicySnapshot {
    return { version: this.version(), entries: this.#entries };
  }

  /** What applying `text` would change, without changing anything (read here, as a file is). */
  diff(text: string, file: string): DocumentChange[] {
    return [...prepareChange(this.snapshot(), text, file, FILE_LIMITS, 'diff').changes];
  }

  /** Adds or replaces the documents in `text` (by kind and name); the others stay. */
  async apply(text: string, file: string, actor: string): Promise<ChangeResult> {
    return this.applyPrepared(prepareChange(this.snapshot(), text, file, FILE_LIMITS, 'apply'), file, actor);
  }

  /**
   * Commits a change read against the version in force; one read against an older version is
   * Conflict (read it again): its diff and its segment checks were about another set.
   */
  applyPrepared(change: PreparedChange, file: string, actor: string): Promise<ChangeResult> {
    return this.#serially(() => {
      if (change.version !== this.version()) throw new AirlockError(ErrorCode.Conflict, `the policy changed from version ${change.version} to ${this.version()} while the change was read`);
      return this.#commit(mergeEntries(this.#entries, change.incoming), actor, 'apply', `apply ${file}`, change);
    });
  }

  delete(kind: DocumentKind, name: string, actor: string): Promise<ChangeResult> {
    return this.#serially(() => this.#delete(kind, name, actor));
  }

  #delete(kind: DocumentKind, name: string, actor: string): Promise<ChangeResult> {
    if (!this.#entries.some((e) => e.kind === kind && e.name === name)) {
      throw new AirlockError(ErrorCode.NotFound, `${kind} "${name}" does not exist in version ${this.version()}`);
    }
    if (kind === 'Segment') {
      const users = this.#docs.flatMap((d) => ((d.kind === 'Policy' || d.kind === 'RateLimit' || d.kind === 'Baseline') && usesSegment(d.doc, name) ? [d] : []));
      if (users.length > 0) {
        throw new AirlockError(ErrorCode.Conflict, `Segment "${name}" is used by ${users.map((d) => `${d.kind} "${d.doc.name}"`).join(', ')}; delete or change those first`);
      }
    }
    return this.#commit(this.#entries.filter((e) => !(e.kind === kind && e.name === name)), actor, 'delete', `delete ${kind}/${name}`);
  }

  /** Makes version `to`'s documents current again, as a new version. */
  rollback(to: number, actor: string): Promise<ChangeResult> {
    return this.#serially(async () => {
      const record = await this.#store.getPolicyVersion(to);
      if (record === undefined) throw new AirlockError(ErrorCode.NotFound, `policy version ${to} does not exist (current: ${this.version()})`);
      return this.#commit(entriesOf(record), actor, 'rollback', `rollback to ${to}`);
    });
  }

  history(limit: number): Promise<Omit<PolicyVersionRecord, 'entries'>[]> {
    return this.#store.listPolicyVersions(limit);
  }

  /**
   * Another replica stored `version`: the newest stored version becomes the one in force here (read
   * and compiled as at start, nothing stored). An older or the same version changes nothing.
   */
  follow(version: number): Promise<void> {
    return this.#serially(async () => {
      if (version <= this.version()) return;
      const latest = await this.#store.latestPolicyVersion();
      if (latest === undefined || latest.version <= this.version()) return;
      const entries = entriesOf(latest);
      const docs = this.#documents(entries, latest.version, []);
      const engine = this.#compile(docs, latest.version);
      this.#entries = entries;
      this.#docs = docs;
      this.#engine = engine;
      this.#decisions.replace({ engine });
      this.#threatFeeds?.configure(threatFeedsOf(docs));
      this.#audit.admin({ actor: latest.actor, action: 'policy.in-force', target: `version ${latest.version}`, detail: { madeBy: `policy.${latest.action}`, summary: latest.summary, elsewhere: true } });
    });
  }

  /** The documents of one stored version. */
  async versionEntries(version: number): Promise<PolicyEntry[]> {
    const record = await this.#store.getPolicyVersion(version);
    if (record === undefined) throw new AirlockError(ErrorCode.NotFound, `policy version ${version} does not exist`);
    return entriesOf(record);
  }

  #serially<T>(change: () => T | Promise<T>): Promise<T> {
    const done = this.#changing.then(change, change);
    this.#changing = done.catch(() => undefined);
    return done;
  }

  async #commit(entries: readonly PolicyEntry[], actor: string, action: string, summary: string, prepared?: PreparedChange): Promise<ChangeResult> {
    const changes = prepared?.changes ?? diffEntries(this.#entries, entries);
    if (changes.length === 0) return { version: this.version(), changed: false, changes };
    const version = this.version() + 1;
    // Validated and compiled before it is stored: whatever fails here leaves the store and the engine as they were.
    const docs = this.#documents(entries, version, prepared?.fresh ?? []);
    const engine = this.#compile(docs, version);
    keepQuarantinedSegments(this.#decisions.current(), engine);
    const at = Date.now();
    await this.#store.appendPolicyVersion(
      { version, entries: JSON.stringify(entries), createdAt: at, actor, action, summary },
      { at, actor, action: `policy.${action}`, target: `version ${version}`, detail: JSON.stringify({ summary, changes }) },
    );
    this.#entries = entries;
    this.#docs = docs;
    this.#engine = engine;
    this.#decisions.replace({ engine });
    this.#threatFeeds?.configure(threatFeedsOf(docs));
    this.#audit.admin({ actor, action: `policy.${action}`, target: `version ${version}`, detail: { summary, changes: changes.map((c) => ({ kind: c.kind, name: c.name, change: c.change, lines: c.lines })) } });
    return { version, changed: true, changes };
  }

  /**
   * Each entry validated from its YAML, as it will be stored: an entry whose YAML the version in
   * force (or `prepared`, read back by the policy worker) has too keeps its document, the others are
   * parsed (together, once); then the whole set's segment references are checked.
   */
  #documents(entries: readonly PolicyEntry[], version: number, prepared: readonly ReadEntry[]): ParsedDocument[] {
    const known = new Map<string, { yaml: string; doc: ParsedDocument }>();
    this.#entries.forEach((e, i) => {
      const doc = this.#docs[i];
      if (doc !== undefined) known.set(entryKey(e), { yaml: e.yaml, doc });
    });
    const ready = new Map(prepared.map((e) => [entryKey(e), e]));
    const docs: (ParsedDocument | undefined)[] = entries.map((e) => {
      const same = [known.get(entryKey(e)), ready.get(entryKey(e))].find((k) => k?.yaml === e.yaml);
      return same?.doc;
    });
    const fresh = entries.filter((_, i) => docs[i] === undefined);
    const segments = new Set(entries.filter((e) => e.kind === 'Segment').map((e) => e.name));
    const parsed = readBack(fresh, segments, `policy v${version}`);
    let next = 0;
    for (let i = 0; i < docs.length; i++) docs[i] ??= parsed[next++];
    const file = `policy v${version}`;
    const all = docs.filter((d) => d !== undefined);
    checkSegmentReferences(all, file);
    return all;
  }

  #compile(docs: readonly ParsedDocument[], version: number): PolicyEngine {
    const segments: SegmentDoc[] = [];
    const policies: PolicyDoc[] = [];
    const rateLimits: RateLimitDoc[] = [];
    const baselines: BaselineDoc[] = [];
    for (const d of docs) {
      if (d.kind === 'Segment') segments.push(d.doc);
      else if (d.kind === 'RateLimit') rateLimits.push(d.doc);
      else if (d.kind === 'Baseline') baselines.push(d.doc);
      else if (d.kind === 'Policy') policies.push(d.doc);
    }
    return new PolicyEngine({ segments, policies, rateLimits, baselines }, this.#trustDomain, version);
  }
}

const usesSegment = (p: PolicyDoc | RateLimitDoc | BaselineDoc, segment: string): boolean => p.fromSegments.includes(segment) || ('toSegments' in p ? (p.toSegments ?? []) : []).includes(segment);

/** Every policy's segments exist in the set (what parsing checks for the documents it reads). */
function checkSegmentReferences(docs: readonly ParsedDocument[], file: string): void {
  const segments = new Set(docs.flatMap((d) => (d.kind === 'Segment' ? [d.doc.name] : [])));
  const problems = docs.flatMap((d) =>
    d.kind === 'Policy' || d.kind === 'RateLimit' || d.kind === 'Baseline' ? [...d.doc.fromSegments, ...('toSegments' in d.doc ? (d.doc.toSegments ?? []) : [])].filter((s) => !segments.has(s)).map((s) => `${file}: ${d.kind} "${d.doc.name}" names segment "${s}", which is not defined`) : [],
  );
  if (problems.length > 0) throw policyInvalid(problems);
}

const threatFeedsOf = (docs: readonly ParsedDocument[]): ThreatFeedDoc[] => docs.flatMap((d) => (d.kind === 'ThreatFeed' ? [d.doc] : []));

function entriesOf(record: PolicyVersionRecord): PolicyEntry[] {
  return JSON.parse(record.entries) as PolicyEntry[];
}
