import { EVENT_ID, parseEvents, SCALAR_STYLE, type Event } from 'js-yaml';
import { isScalar, Schema, type ScalarTag } from 'yaml';
import { MAX_LABELS } from '@airlock/common/labels';
import type { YamlLimits } from './yaml-limits.ts';
import type { TreeMap, TreeNode, TreeScalar, TreeSeq } from './yaml-tree.ts';

/**
 * The fast first pass over policy YAML: js-yaml's event parser (~10× faster than `yaml` on large
 * bundles), building the same tree `yaml` would, for the plain subset of YAML policies are written
 * in. Anything outside it — anchors, aliases, tags, directives, empty values or documents, escaped,
 * folded, multi-line or block scalars, non-string or duplicate keys, control characters, a
 * byte-order mark, a `...` that ends no document, or a parse error — sets `failed`, and the
 * caller parses with `yaml` instead, which decides and reports. Plain scalars resolve through
 * `yaml`'s own core-schema tags, so `yes`, `0x50`, `1e3` or `2001-12-14` read exactly as `yaml`
 * reads them.
 *
 * Iterating yields each document's root, reading the text a document at a time so a large bundle's
 * parser events die young: a `---` line always ends a document (or is an error inside a quoted
 * scalar or flow collection, which fails this pass as well).
 *
 * A text over `limits` (documents, nodes, nesting, keys in a mapping) fails this pass too: `yaml` refuses it, naming
 * the limit and where.
 */
export class FastDocuments implements Iterable<TreeNode> {
  readonly #text: string;
  readonly #limits: YamlLimits;
  #failed = false;

  constructor(text: string, limits: YamlLimits) {
    this.#text = text;
    this.#limits = limits;
  }

  /** Whether the text is outside what this pass reads: only `yaml` may judge it. */
  get failed(): boolean {
    return this.#failed;
  }

  *[Symbol.iterator](): Iterator<TreeNode> {
    const text = this.#text;
    // Line breaks other than \n, directives (`%YAML 1.1` changes how scalars read) and the rest are
    // left to `yaml`.
    if (UNUSUAL.test(text) || LEADING_END.test(text) || REPEATED_END.test(text)) {
      this.#failed = true;
      return;
    }
    // What is left of each limit, across chunks.
    const left = { documents: this.#limits.documents, nodes: this.#limits.nodes };
    for (let start = 0; start < text.length && !this.#failed; ) {
      const marker = text.indexOf('\n---\n', start);
      const end = marker === -1 ? text.length : marker + 1;
      const roots = chunkDocuments(text.slice(start, end), start, left, this.#limits);
      if (roots === undefined) this.#failed = true;
      else yield* roots;
      start = end;
    }
  }
}

// C0 controls other than tab and line feed (so also \r), DEL, C1 controls, BOM and non-characters;
// and a `%` opening a line (a directive).
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const UNUSUAL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\ufffe\uffff]|^%/m;

// A `...` that ends no document (before any, or right after another `...`, comments and blank lines
// aside): `yaml` reads an empty document there (and validation refuses it), js-yaml reads nothing.
const LEADING_END = /^(?:[ \t]*(?:#.*)?\n)*\.\.\.(?=[ \t\n]|$)/;
const REPEATED_END = /^\.\.\.(?:[ \t].*)?\n(?:[ \t]*(?:#.*)?\n)*\.\.\.(?=[ \t\n]|$)/m;

/** The documents of one piece of text starting at `base`, or undefined when this pass cannot read it. */
function chunkDocuments(text: string, base: number, left: { documents: number; nodes: number }, limits: YamlLimits): TreeNode[] | undefined {
  // No valid mapping has more than MAX_LABELS keys, which bounds the duplicate scan below.
  const maxKeys = Math.min(MAX_LABELS, limits.mappingKeys);
  let events: Event[];
  try {
    events = parseEvents(text, {});
  } catch {
    return undefined;
  }
  const roots: TreeNode[] = [];
  // Open collections, innermost last; a mapping's key, while its value is next.
  const stack: (TreeMap | TreeSeq)[] = [];
  let key: TreeScalar | undefined;
  let inDocument = false;
  let root: TreeNode | undefined;
  for (let i = 0; i < events.length; i++) {
    const e = events[i] as Event;
    let node: TreeNode;
    switch (e.type) {
      case EVENT_ID.DOCUMENT:
        if (e.directives.length > 0) return undefined;
        inDocument = true;
        root = undefined;
        continue;
      case EVENT_ID.POP:
        if (stack.length > 0) {
          if (key !== undefined) return undefined;
          stack.pop();
        } else if (inDocument) {
          if (root === undefined || --left.documents < 0) return undefined;
          roots.push(root);
          inDocument = false;
        }
        continue;
      case EVENT_ID.ALIAS:
        return undefined;
      case EVENT_ID.MAPPING:
      case EVENT_ID.SEQUENCE:
        if (e.anchorStart !== -1 || e.tagStart !== -1) return undefined;
        node = e.type === EVENT_ID.MAPPING ? { kind: 'map', pos: base + e.start, items: [] } : { kind: 'seq', pos: base + e.start, items: [] };
        break;
      case EVENT_ID.SCALAR: {
        if (e.anchorStart !== -1 || e.tagStart !== -1) return undefined;
        // An empty value (`mode:`, or an empty document, which `yaml` reads as a null root).
        if (e.valueStart === -1 || !e.fast) return undefined;
        const raw = text.slice(e.valueStart, e.valueEnd);
        let value: unknown = raw;
        if (e.style === SCALAR_STYLE.PLAIN) value = plainValue(raw);
        else if (e.style !== SCALAR_STYLE.SINGLE_QUOTED && e.style !== SCALAR_STYLE.DOUBLE_QUOTED) return undefined;
        if (value === NOT_PLAIN) return undefined;
        node = { kind: 'scalar', pos: base + e.valueStart, value };
        break;
      }
    }
    const parent = stack[stack.length - 1];
    // Counted as `yaml`'s pass counts, or more (a sequence item and its node): what this pass
    // accepts, `yaml` would too.
    left.nodes -= parent?.kind === 'seq' ? 2 : 1;
    if (left.nodes < 0 || stack.length >= limits.depth) return undefined;
    if (parent === undefined) root = node;
    else if (parent.kind === 'seq') parent.items.push(node);
    else if (key !== undefined) {
      parent.items.push({ key, value: node });
      key = undefined;
    } else {
      // A key: only strings name fields or labels, and `yaml` refuses a repeated one (and more than
      // the limit's keys).
      if (node.kind !== 'scalar' || typeof node.value !== 'string' || parent.items.length >= maxKeys) return undefined;
      for (const pair of parent.items) if ((pair.key as TreeScalar).value === node.value) return undefined;
      key = node;
    }
    if (node.kind !== 'scalar') stack.push(node);
  }
  return stack.length === 0 && !inDocument ? roots : undefined;
}

// The schema `parseAllDocuments` uses by default (YAML 1.2 core), and its scalar tags in its order.
const CORE_TAGS = new Schema({}).tags.filter((t): t is ScalarTag => !t.collection && t.default === true && t.test !== undefined);
const NOT_PLAIN = Symbol('not plain');
const RESOLVE_OPTIONS = { intAsBigInt: false };

// Whether any of them matches, in one test: most plain scalars are names, which none matches. (Only
// when their flags allow joining them; otherwise every scalar goes through the tags one by one.)
const FLAGS = [...new Set(CORE_TAGS.map((t) => t.test?.flags ?? ''))];
const ANY_CORE_TAG = FLAGS.length === 1 && !/[gy]/.test(FLAGS[0] ?? '') ? new RegExp(CORE_TAGS.map((t) => `(?:${t.test?.source ?? ''})`).join('|'), FLAGS[0]) : /(?:)/;

/** A plain scalar's value as `yaml` resolves it: the first core tag whose test matches, else the string. */
function plainValue(raw: string): unknown {
  if (!ANY_CORE_TAG.test(raw)) return raw;
  for (const tag of CORE_TAGS) {
    if (tag.test?.test(raw) !== true) continue;
    const resolve = { failed: false };
    const v = tag.resolve(raw, () => (resolve.failed = true), RESOLVE_OPTIONS);
    if (resolve.failed) return NOT_PLAIN;
    return isScalar(v) ? v.value : v;
  }
  return raw;
}
