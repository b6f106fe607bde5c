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

/**
 * Which segments an identity belongs to, without testing every selector: selectors naming a
 * literal namespace and service account (the common case) are a map lookup; only selectors with a
 * glob are scanned, and only the part with the glob is tested. At 2,000 segments this is the
 * difference between a few microseconds and milliseconds per decision.
 */
export class SegmentIndex {
  readonly #exact = new Map<string, { order: number; name: string }[]>();
  readonly #bySa = new Map<string, GlobEntry[]>();
  readonly #byNs = new Map<string, GlobEntry[]>();
  readonly #scan: FullGlobEntry[] = [];

  constructor(segments: readonly SegmentDoc[]) {
    segments.forEach((s, order) => {
      const ns = s.namespace ?? '*';
      for (const sa of s.serviceAccounts) {
        const nsLiteral = !ns.includes('*');
        const saLiteral = !sa.includes('*');
        if (nsLiteral && saLiteral) push(this.#exact, `${ns}/${sa}`, { order, name: s.name });
        else if (saLiteral) push(this.#bySa, sa, { order, name: s.name, test: globTest(ns) });
        else if (nsLiteral) push(this.#byNs, ns, { order, name: s.name, test: globTest(sa) });
        else this.#scan.push({ order, name: s.name, namespace: globTest(ns), serviceAccount: globTest(sa) });
      }
    });
  }

  /** Segment names in definition order, each once. */
  segmentsOf(id: SpiffeId): string[] {
    const found = new Map<string, number>();
    for (const e of this.#exact.get(`${id.namespace}/${id.serviceAccount}`) ?? []) found.set(e.name, e.order);
    for (const e of this.#bySa.get(id.serviceAccount) ?? []) if (e.test(id.namespace)) found.set(e.name, e.order);
    for (const e of this.#byNs.get(id.namespace) ?? []) if (e.test(id.serviceAccount)) found.set(e.name, e.order);
    for (const e of this.#scan) if (e.namespace(id.namespace) && e.serviceAccount(id.serviceAccount)) found.set(e.name, e.order);
    if (found.size <= 1) return [...found.keys()];
    return [...found.entries()].sort((a, b) => a[1] - b[1]).map(([name]) => name);
  }
}

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
