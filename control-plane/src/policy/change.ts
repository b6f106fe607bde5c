import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { diffEntries, type DocumentChange } from './diff.ts';
import { parsePolicyBundle, parsePolicyDocuments, type ParsedDocument, type PolicyEntry } from './load.ts';
import type { YamlLimits } from './yaml-limits.ts';

/** The set of documents in force at a version: what a change is computed against. */
export interface PolicySnapshot {
  readonly version: number;
  readonly entries: readonly PolicyEntry[];
}

/** An entry with its document, validated from that entry's YAML (as it will be stored). */
export interface ReadEntry extends PolicyEntry {
  readonly doc: ParsedDocument;
}

/**
 * What applying a bundle to `version` would do. Plain data, so a worker thread can compute it (the
 * costly part: parse, validate, diff) and the event loop only commits it.
 */
export interface PreparedChange {
  readonly version: number;
  /** The bundle's documents, in bundle order. */
  readonly incoming: readonly PolicyEntry[];
  readonly changes: readonly DocumentChange[];
  /** The incoming entries that differ from the set in force, read back (none for a diff: not needed). */
  readonly fresh: readonly ReadEntry[];
}

export const entryKey = (e: Pick<PolicyEntry, 'kind' | 'name'>): string => `${e.kind}/${e.name}`;

/** Reads a bundle against `snapshot` within `limits`: the one implementation of diff and apply. */
export function prepareChange(snapshot: PolicySnapshot, text: string, file: string, limits: YamlLimits, op: 'diff' | 'apply'): PreparedChange {
  const known = new Set(snapshot.entries.filter((e) => e.kind === 'Segment').map((e) => e.name));
  const incoming = parsePolicyBundle(text, file, known, limits).entries;
  if (incoming.length === 0) throw new AirlockError(ErrorCode.Policy, `invalid policy:\n  - ${file}: no Segment or Policy documents`);
  const merged = mergeEntries(snapshot.entries, incoming);
  const current = new Map(snapshot.entries.map((e) => [entryKey(e), e.yaml]));
  const changed = incoming.filter((e) => current.get(entryKey(e)) !== e.yaml);
  const segments = new Set(merged.filter((e) => e.kind === 'Segment').map((e) => e.name));
  const changes = diffEntries(snapshot.entries, merged);
  if (op === 'diff') return { version: snapshot.version, incoming: [], changes, fresh: [] };
  const docs = readBack(changed, segments, `policy v${snapshot.version + 1}`);
  return { version: snapshot.version, incoming, changes, fresh: changed.map((e, i) => ({ ...e, doc: docs[i] as ParsedDocument })) };
}

/** `current` with `incoming` added or replacing the same kind and name, in place. */
export function mergeEntries(current: readonly PolicyEntry[], incoming: readonly PolicyEntry[]): PolicyEntry[] {
  const byKey = new Map(incoming.map((e) => [entryKey(e), e]));
  const merged = current.map((e) => {
    const next = byKey.get(entryKey(e));
    byKey.delete(entryKey(e));
    return next ?? e;
  });
  return [...merged, ...byKey.values()];
}

/** Each entry validated from its own YAML (read together, once), in order; each must read back as itself. */
export function readBack(entries: readonly PolicyEntry[], segments: ReadonlySet<string>, file: string): ParsedDocument[] {
  if (entries.length === 0) return [];
  const parsed = parsePolicyDocuments(entries.map((e) => e.yaml).join('---\n'), file, segments).ordered;
  entries.forEach((e, i) => {
    const d = parsed[i];
    if (d?.kind !== e.kind || d.doc.name !== e.name) throw new AirlockError(ErrorCode.Policy, `invalid policy:\n  - ${file}: ${e.kind} "${e.name}" does not read back as itself`);
  });
  if (parsed.length !== entries.length) throw new AirlockError(ErrorCode.Policy, `invalid policy:\n  - ${file}: ${parsed.length} documents read back from ${entries.length} entries`);
  return [...parsed];
}
