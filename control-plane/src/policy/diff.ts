import type { PolicyEntry } from './load.ts';

export type ChangeKind = 'added' | 'changed' | 'removed';

/** One document that differs between two policy sets, with a line diff of its YAML. */
export interface DocumentChange {
  readonly kind: PolicyEntry['kind'];
  readonly name: string;
  readonly change: ChangeKind;
  /** Unified-style lines: `+ added`, `- removed`, `  same`. */
  readonly lines: readonly string[];
}

const key = (e: PolicyEntry): string => `${e.kind}/${e.name}`;

/** The documents added, changed or removed from `before` to `after` (unchanged ones are left out). */
export function diffEntries(before: readonly PolicyEntry[], after: readonly PolicyEntry[]): DocumentChange[] {
  const old = new Map(before.map((e) => [key(e), e]));
  const next = new Map(after.map((e) => [key(e), e]));
  const out: DocumentChange[] = [];
  for (const e of after) {
    const was = old.get(key(e));
    if (was === undefined) out.push({ kind: e.kind, name: e.name, change: 'added', lines: lines(e.yaml).map((l) => `+ ${l}`) });
    else if (was.yaml !== e.yaml) out.push({ kind: e.kind, name: e.name, change: 'changed', lines: lineDiff(lines(was.yaml), lines(e.yaml)) });
  }
  for (const e of before) {
    if (!next.has(key(e))) out.push({ kind: e.kind, name: e.name, change: 'removed', lines: lines(e.yaml).map((l) => `- ${l}`) });
  }
  return out;
}

function lines(yaml: string): string[] {
  return yaml.replace(/\n$/, '').split('\n');
}

/** Cells of the LCS table at most (16 MB): beyond, the differing middle is shown as removed, then added. */
export const MAX_DIFF_CELLS = 4_000_000;

/**
 * A longest-common-subsequence line diff of what differs between the common first and last lines.
 * O(n·m) time and memory, so bounded: two documents of 10,000 lines would need 400 MB.
 */
export function lineDiff(a: readonly string[], b: readonly string[]): string[] {
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  const same = (lines: readonly string[]): string[] => lines.map((l) => `  ${l}`);
  const x = a.slice(head, a.length - tail);
  const y = b.slice(head, b.length - tail);
  const middle = (x.length + 1) * (y.length + 1) > MAX_DIFF_CELLS ? [...x.map((l) => `- ${l}`), ...y.map((l) => `+ ${l}`)] : lcsDiff(x, y);
  return [...same(a.slice(0, head)), ...middle, ...same(a.slice(a.length - tail))];
}

function lcsDiff(a: readonly string[], b: readonly string[]): string[] {
  const n = a.length;
  const m = b.length;
  // lcs[i * (m + 1) + j]: length of the LCS of a[i..] and b[j..].
  const lcs = new Uint32Array((n + 1) * (m + 1));
  const at = (i: number, j: number): number => lcs[i * (m + 1) + j] ?? 0;
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * (m + 1) + j] = a[i] === b[j] ? at(i + 1, j + 1) + 1 : Math.max(at(i + 1, j), at(i, j + 1));
    }
  }
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    const x = a[i];
    const y = b[j];
    if (x !== undefined && y !== undefined && x === y) {
      out.push(`  ${x}`);
      i++;
      j++;
    } else if (x !== undefined && (y === undefined || at(i + 1, j) >= at(i, j + 1))) {
      out.push(`- ${x}`);
      i++;
    } else {
      out.push(`+ ${y ?? ''}`);
      j++;
    }
  }
  return out;
}
