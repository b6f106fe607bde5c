import type { Labels } from '@airlock/common/labels';
import type { SpiffeId } from '@airlock/common/spiffe';
import { globToRegExp } from './glob.ts';
import type { SegmentDoc } from './types.ts';

interface GlobEntry {
  readonly order: number;
  readonly name: string;
  readonly test: (value: string) => boolean;
}

interface FullGlobEntry {
  readonly order: number;
  readonly name: string;
  readonly namespace: (value: string) => boolean;
  readonly serviceAccount: (value: string) => boolean;
}

interface LabelEntry {
  readonly order: number;
  readonly name: string;
  /** Every label of the selector (the one it is indexed by too). */
  readonly labels: readonly (readonly [string, string])[];
  readonly namespace: (value: string) => boolean;
  readonly serviceAccount: (value: string) => boolean;
}

/**
 * Which segments an identity belongs to, without testing every selector: selectors naming a
 * literal namespace and service account (the common case) are a map lookup; only selectors with a
 * glob are scanned, and only the part with the glob is tested. At 2,000 segments this is the
 * difference between a few microseconds and milliseconds per decision. Explicit SPIFFE IDs are a
 * lookup by the whole ID (its trust domain included). Selectors with labels are filed under one of
 * their `key=value` pairs: an agent's own labels (a few) are the lookups, never a scan of segments.
 */
export class SegmentIndex {
  readonly #exact = new Map<string, { order: number; name: string }[]>();
  readonly #byId = new Map<string, { order: number; name: string }[]>();
  readonly #bySa = new Map<string, GlobEntry[]>();
  readonly #byNs = new Map<string, GlobEntry[]>();
  /** Service-account globs `literal*` (the usual kind), by their literal part; tested by the namespace glob. */
  readonly #bySaPrefix = new Map<string, GlobEntry[]>();
  /** The lengths of those literal parts: a lookup tries only these prefixes of a name. */
  #prefixLengths: number[] = [];
  readonly #scan: FullGlobEntry[] = [];
  readonly #byLabel = new Map<string, LabelEntry[]>();
  /** True when some selector has labels: only then are an agent's labels needed. */
  readonly usesLabels: boolean;

  constructor(segments: readonly SegmentDoc[]) {
    segments.forEach((s, order) => {
      for (const id of s.spiffeIds) push(this.#byId, id, { order, name: s.name });
      const ns = s.namespace ?? '*';
      const labels = Object.entries(s.labels);
      const first = labels[0];
      if (first !== undefined) {
        // Labels and namespace/serviceAccounts must all hold: filed once, under its first label.
        const sas = s.serviceAccounts.map(globTest);
        push(this.#byLabel, `${first[0]}=${first[1]}`, { order, name: s.name, labels, namespace: globTest(ns), serviceAccount: (v) => sas.some((t) => t(v)) });
        return;
      }
      for (const sa of s.serviceAccounts) {
        const nsLiteral = !ns.includes('*');
        const saLiteral = !sa.includes('*');
        if (nsLiteral && saLiteral) push(this.#exact, `${ns}/${sa}`, { order, name: s.name });
        else if (saLiteral) push(this.#bySa, sa, { order, name: s.name, test: globTest(ns) });
        else if (nsLiteral) push(this.#byNs, ns, { order, name: s.name, test: globTest(sa) });
        else if (sa.indexOf('*') === sa.length - 1 && sa.length > 1) push(this.#bySaPrefix, sa.slice(0, -1), { order, name: s.name, test: globTest(ns) });
        else this.#scan.push({ order, name: s.name, namespace: globTest(ns), serviceAccount: globTest(sa) });
      }
    });
    this.#prefixLengths = [...new Set([...this.#bySaPrefix.keys()].map((k) => k.length))].sort((a, b) => a - b);
    this.usesLabels = this.#byLabel.size > 0;
  }

  /** Segment names in definition order, each once. `labels` are the agent's (from its attestation). */
  segmentsOf(id: SpiffeId, labels: Labels = NO_LABELS): string[] {
    // An identity is in a few segments: a small array beats a Map here (this runs twice per decision).
    const found: { name: string; order: number }[] = [];
    const add = (e: { name: string; order: number }): void => {
      if (!found.some((f) => f.name === e.name)) found.push(e);
    };
    const ns = id.namespace;
    const sa = id.serviceAccount;
    for (const e of this.#byId.get(id.uri) ?? []) add(e);
    for (const e of this.#exact.get(`${ns}/${sa}`) ?? []) add(e);
    for (const e of this.#bySa.get(sa) ?? []) if (e.test(ns)) add(e);
    for (const e of this.#byNs.get(ns) ?? []) if (e.test(sa)) add(e);
    for (const len of this.#prefixLengths) {
      if (len > sa.length) break;
      for (const e of this.#bySaPrefix.get(sa.slice(0, len)) ?? []) if (e.test(ns)) add(e);
    }
    for (const e of this.#scan) if (e.namespace(ns) && e.serviceAccount(sa)) add(e);
    if (this.usesLabels) {
      for (const key in labels) {
        for (const e of this.#byLabel.get(`${key}=${labels[key] ?? ''}`) ?? []) {
          if (e.labels.every(([k, v]) => labels[k] === v) && e.namespace(ns) && e.serviceAccount(sa)) add(e);
        }
      }
    }
    if (found.length > 1) found.sort((a, b) => a.order - b.order);
    return found.map((f) => f.name);
  }

}

const NO_LABELS: Labels = {};

function push<T>(map: Map<string, T[]>, key: string, value: T): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

/** `*` alone matches anything without a regex; other globs become anchored regexes. */
function globTest(glob: string): (value: string) => boolean {
  if (glob === '*') return () => true;
  const re = globToRegExp(glob);
  return (value) => re.test(value);
}
