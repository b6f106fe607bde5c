import type { Labels } from '@airlock/common/labels';
import type { SpiffeId } from '@airlock/common/spiffe';
import { Glob } from './glob.ts';
import type { SegmentDoc } from './types.ts';

/** A selector with a glob: its segment (by position) and the glob left to test. */
interface GlobEntry {
  readonly segment: number;
  readonly glob: Glob;
}

interface FullGlobEntry {
  readonly segment: number;
  readonly namespace: Glob;
  readonly serviceAccount: Glob;
}

interface LabelEntry {
  readonly segment: number;
  /** Every label of the selector (the one it is indexed by too). */
  readonly labels: readonly (readonly [string, string])[];
  readonly namespace: Glob;
  readonly serviceAccounts: readonly Glob[];
}

/**
 * Which segments an identity belongs to, without testing every selector: selectors naming a
 * literal namespace and service account (the common case) are a map lookup; only selectors with a
 * glob are scanned, and only the part with the glob is tested. At 2,000 segments this is the
 * difference between a few microseconds and milliseconds per decision. Explicit SPIFFE IDs are a
 * lookup by the whole ID (its trust domain included). Selectors with labels are filed under one of
 * their `key=value` pairs: an agent's own labels (a few) are the lookups, never a scan of segments.
 *
 * Segments are numbered by definition order (`names[n]`); a lookup builds no strings beyond one
 * slice per `prefix*` length it tries.
 */
/** Identities whose segment names are kept at most (past it the cache starts again). */
const MAX_CACHED_IDENTITIES = 100_000;

export class SegmentIndex {
  /** Segment names by number (definition order). */
  readonly names: readonly string[];
  readonly #byId = new Map<string, number[]>();
  /** namespace → service account → segments. */
  readonly #exact = new Map<string, Map<string, number[]>>();
  readonly #bySa = new Map<string, GlobEntry[]>();
  readonly #byNs = new Map<string, GlobEntry[]>();
  /** Service-account globs `literal*` (the usual kind), by their literal part; tested by the namespace glob. */
  readonly #bySaPrefix = new Map<string, GlobEntry[]>();
  /** The lengths of those literal parts: a lookup tries only these prefixes of a name. */
  readonly #prefixLengths: readonly number[];
  readonly #scan: FullGlobEntry[] = [];
  /** label key → value → selectors filed under that pair. */
  readonly #byLabel = new Map<string, Map<string, LabelEntry[]>>();
  /** segmentsOf per identity when no selector has labels (each decision's audit line names both parties'); bounded. */
  readonly #namesOf = new Map<string, readonly string[]>();
  /** True when some selector has labels: only then are an agent's labels needed. */
  readonly usesLabels: boolean;

  constructor(segments: readonly SegmentDoc[]) {
    this.names = segments.map((s) => s.name);
    segments.forEach((s, segment) => {
      for (const id of s.spiffeIds) push(this.#byId, id, segment);
      const ns = s.namespace ?? '*';
      const labels = Object.entries(s.labels);
      const first = labels[0];
      if (first !== undefined) {
        // Labels and namespace/serviceAccounts must all hold: filed once, under its first label.
        const byValue = this.#byLabel.get(first[0]) ?? new Map<string, LabelEntry[]>();
        this.#byLabel.set(first[0], byValue);
        push(byValue, first[1], { segment, labels, namespace: new Glob(ns), serviceAccounts: s.serviceAccounts.map((g) => new Glob(g)) });
        return;
      }
      for (const sa of s.serviceAccounts) {
        const nsLiteral = !ns.includes('*');
        const saLiteral = !sa.includes('*');
        if (nsLiteral && saLiteral) {
          const bySa = this.#exact.get(ns) ?? new Map<string, number[]>();
          this.#exact.set(ns, bySa);
          push(bySa, sa, segment);
        } else if (saLiteral) push(this.#bySa, sa, { segment, glob: new Glob(ns) });
        else if (nsLiteral) push(this.#byNs, ns, { segment, glob: new Glob(sa) });
        else if (sa.indexOf('*') === sa.length - 1 && sa.length > 1) push(this.#bySaPrefix, sa.slice(0, -1), { segment, glob: new Glob(ns) });
        else this.#scan.push({ segment, namespace: new Glob(ns), serviceAccount: new Glob(sa) });
      }
    });
    this.#prefixLengths = [...new Set([...this.#bySaPrefix.keys()].map((k) => k.length))].sort((a, b) => a - b);
    this.usesLabels = this.#byLabel.size > 0;
  }

  /** Segment names in definition order, each once. `labels` are the agent's (from its attestation). */
  segmentsOf(id: SpiffeId, labels?: Labels): readonly string[] {
    // Labels count only when some selector has them; then nothing is cached.
    if (this.usesLabels) return this.numbersOf(id, labels).map((n) => this.names[n] ?? '');
    let names = this.#namesOf.get(id.uri);
    if (names === undefined) {
      if (this.#namesOf.size >= MAX_CACHED_IDENTITIES) this.#namesOf.clear();
      names = Object.freeze(this.numbersOf(id).map((n) => this.names[n] ?? ''));
      this.#namesOf.set(id.uri, names);
    }
    return names;
  }

  /** Segment numbers in ascending (definition) order, each once. */
  numbersOf(id: SpiffeId, labels: Labels = NO_LABELS): number[] {
    // An identity is in a few segments: a small array beats a Set here.
    const found: number[] = [];
    const ns = id.namespace;
    const sa = id.serviceAccount;
    addAll(found, this.#byId.get(id.uri));
    addAll(found, this.#exact.get(ns)?.get(sa));
    addTested(found, this.#bySa.get(sa), ns);
    addTested(found, this.#byNs.get(ns), sa);
    for (const len of this.#prefixLengths) {
      if (len > sa.length) break;
      addTested(found, this.#bySaPrefix.get(sa.slice(0, len)), ns);
    }
    for (const e of this.#scan) if (e.namespace.test(ns) && e.serviceAccount.test(sa)) add(found, e.segment);
    if (this.usesLabels) {
      for (const key in labels) {
        const entries = this.#byLabel.get(key)?.get(labels[key] ?? '');
        if (entries === undefined) continue;
        for (const e of entries) {
          if (e.labels.every(([k, v]) => labels[k] === v) && e.namespace.test(ns) && e.serviceAccounts.some((g) => g.test(sa))) add(found, e.segment);
        }
      }
    }
    if (found.length > 1) found.sort(ascending);
    return found;
  }
}

const NO_LABELS: Labels = {};

const ascending = (a: number, b: number): number => a - b;

function add(found: number[], segment: number): void {
  if (!found.includes(segment)) found.push(segment);
}

function addAll(found: number[], segments: readonly number[] | undefined): void {
  if (segments !== undefined) for (const s of segments) add(found, s);
}

function addTested(found: number[], entries: readonly GlobEntry[] | undefined, value: string): void {
  if (entries !== undefined) for (const e of entries) if (e.glob.test(value)) add(found, e.segment);
}

function push<T>(map: Map<string, T[]>, key: string, value: T): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}
