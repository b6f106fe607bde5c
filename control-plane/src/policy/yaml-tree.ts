import { isMap, isScalar, isSeq } from 'yaml';

/**
 * A YAML document as validation reads it: mappings (pairs in order), sequences, and scalars with their
 * resolved values (core schema). Both parsers build it — `yaml` with exact positions (for messages),
 * the fast pass without — so one validator serves both and they cannot drift apart.
 */
export type TreeNode = TreeMap | TreeSeq | TreeScalar | TreeOther;

interface TreeBase {
  /** Offset of the node in its text, when known. */
  readonly pos: number | undefined;
}

export interface TreeMap extends TreeBase {
  readonly kind: 'map';
  readonly items: TreePair[];
}

export interface TreePair {
  readonly key: TreeNode | null;
  readonly value: TreeNode | null;
}

export interface TreeSeq extends TreeBase {
  readonly kind: 'seq';
  readonly items: (TreeNode | null)[];
}

export interface TreeScalar extends TreeBase {
  readonly kind: 'scalar';
  readonly value: unknown;
}

/** An alias (or anything else `yaml` may hold): never what a field expects. */
export interface TreeOther extends TreeBase {
  readonly kind: 'other';
}

/** A node of a `yaml` Document, with its offset. */
export function treeOf(node: unknown): TreeNode | null {
  if (node === null || node === undefined) return null;
  const pos = (node as { range?: readonly number[] | null }).range?.[0];
  if (isMap(node)) return { kind: 'map', pos, items: node.items.map((p) => ({ key: treeOf(p.key), value: treeOf(p.value) })) };
  if (isSeq(node)) return { kind: 'seq', pos, items: node.items.map((i) => treeOf(i)) };
  if (isScalar(node)) return { kind: 'scalar', pos, value: node.value };
  return { kind: 'other', pos };
}

/** The value of `key` in a mapping (keys are unique: both parsers refuse duplicates). */
export function fieldOf(map: TreeNode | null | undefined, key: string): TreeNode | null | undefined {
  if (map?.kind !== 'map') return undefined;
  for (const pair of map.items) {
    if (pair.key?.kind === 'scalar' && pair.key.value === key) return pair.value;
  }
  return undefined;
}
