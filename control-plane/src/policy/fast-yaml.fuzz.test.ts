import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { fuzz } from '@airlock/common/testing/fuzz';
import fc from 'fast-check';
import { Composer, Parser, stringify, type Document } from 'yaml';
import { describe, expect, it } from 'vitest';
import { FastDocuments } from './fast-yaml.ts';
import { parsePolicyBundle, parsePolicyDocuments } from './load.ts';
import { ADMIN_LIMITS, FILE_LIMITS, type YamlLimits } from './yaml-limits.ts';
import { treeOf, type TreeNode } from './yaml-tree.ts';

// The reference is `yaml` (YAML 1.2, core schema, unique keys), which decides every policy text the
// fast pass does not read. Texts are policy bundles as people write them, in every style `yaml`
// writes (block, flow, quoted, folded), then edited with what YAML is subtle about.

/** The outcome of a read: its documents, or its typed refusal; anything else thrown fails the property. */
function outcome(read: () => unknown): unknown {
  try {
    return read();
  } catch (err) {
    if (err instanceof AirlockError && (err.code === ErrorCode.Policy || err.code === ErrorCode.TooLarge)) return `refused (${err.code}): ${err.message}`;
    throw err;
  }
}

/** A tree without positions (the fast pass records a scalar's where its value starts, `yaml` where its quote does). */
function shape(node: TreeNode | null): unknown {
  if (node === null) return null;
  switch (node.kind) {
    case 'map':
      return { map: node.items.map((p) => [shape(p.key), shape(p.value)]) };
    case 'seq':
      return { seq: node.items.map(shape) };
    case 'scalar':
      return { scalar: node.value };
    default:
      return { other: true };
  }
}

/** `yaml`'s documents of `text`, composed as the policy loader composes them. */
function yamlDocuments(text: string): Document.Parsed[] {
  const composer = new Composer({ prettyErrors: false, uniqueKeys: true });
  return [...composer.compose(new Parser().parse(text))];
}

const SCALARS = ['x', 'agents', 'r-*', '*', 'api.example.com', '*.example.com', 'GET', 'POST', '/v1/*', '/v1/search', 'tools/call', 'search_*', 'x-tenant', 'acme', 'allow', 'deny', 'enforce', 'dry-run', 'yes', 'no', 'on', 'true', 'True', 'false', '~', 'null', '', ' ', '0x50', '0o17', '080', '1e3', '443', '443.0', '65536', '-1', '.inf', '.nan', '2001-12-14', '12:30:00', 'a: b', '- x', '#c', 'a #c', '"q"', "'s'", '[x]', '{x}', '&a', '*a', '!!str', '%x', '@x', '`x', '|', '>', '?', 'é', '\u2028', '\t', 'a\nb', 'spiffe://airlock.local/ns/a/sa/b'];
const scalar = fc.oneof(fc.constantFrom(...SCALARS), fc.integer({ min: -1, max: 70000 }), fc.boolean(), fc.constant(null));
const name = fc.constantFrom('a', 'b', 'tools', 'x.y', 'A', '-a', '');
const list = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T[]> => fc.array(a, { maxLength: 3 });
const maybe = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(a, { nil: undefined, freq: 2 });
const segment = fc.record({
  apiVersion: fc.constantFrom('airlock.dev/v1', 'airlock.dev/v2'),
  kind: fc.constant('Segment'),
  metadata: fc.record({ name }),
  spec: fc.record({ selector: fc.record({ namespace: maybe(scalar), serviceAccounts: maybe(list(scalar)), labels: maybe(fc.dictionary(fc.constantFrom('team', 'tier', 'a/b', 'x'), scalar, { maxKeys: 2 })) }, { requiredKeys: [] }) }),
});
const rule = fc.record({
  methods: maybe(list(fc.constantFrom('GET', 'POST', 'get', 'PUT'))),
  paths: maybe(list(fc.constantFrom('/v1/*', '/health', '/*', '/a/../b', '/a;x', 'v1'))),
  mcp: maybe(fc.record({ methods: maybe(list(scalar)), tools: maybe(list(scalar)) }, { requiredKeys: [] })),
  headers: maybe(list(fc.oneof(fc.record({ name: scalar, values: list(scalar) }), fc.record({ name: scalar, present: scalar })))),
}, { requiredKeys: [] });
const policy = fc.record({
  apiVersion: fc.constant('airlock.dev/v1'),
  kind: fc.constantFrom('Policy', 'policy'),
  metadata: fc.record({ name }),
  spec: fc.record({
    from: fc.record({ segments: list(name) }),
    to: fc.oneof(fc.record({ segments: list(name) }), fc.record({ hosts: list(scalar), ports: maybe(list(scalar)) }, { requiredKeys: ['hosts'] })),
    rules: maybe(list(rule)),
    action: fc.constantFrom('allow', 'deny', 'maybe'),
    mode: maybe(fc.constantFrom('enforce', 'dry-run', 'on')),
  }, { requiredKeys: ['from', 'to', 'action'] }),
});
const style = fc.record({
  collectionStyle: fc.constantFrom('any', 'block', 'flow'),
  defaultStringType: fc.constantFrom('PLAIN', 'QUOTE_DOUBLE', 'QUOTE_SINGLE', 'BLOCK_LITERAL', 'BLOCK_FOLDED'),
  defaultKeyType: fc.constantFrom(null, 'PLAIN', 'QUOTE_DOUBLE'),
  indent: fc.constantFrom(2, 4),
  lineWidth: fc.constantFrom(0, 30, 80),
}) as fc.Arbitrary<Parameters<typeof stringify>[2] & object>;
const PIECES = [' ', '\n', '\t', ':', '-', '[', ']', '{', '}', ',', '#', '"', "'", '&a ', '*a', '!!str ', '|', '>', '? ', '%', '\\', 'x', '0', '.', '~', '---\n', '...\n', '\n...\n', '...\n...\n', '- ', ': ', 'yes', 'null', '0x1F', '<<: ', '\r\n', '\ufeff', '\u0085'];
/**
 * Edits: insert a piece anywhere, where a line starts or where a value starts (after `: ` or `- `);
 * drop a few characters; shift a line's indentation; repeat a line (a repeated key, as often as not).
 */
const edit = fc.tuple(fc.nat(), fc.nat(5), fc.constantFrom(...PIECES), fc.nat(3));
function applyEdit(text: string, [at, op, piece, n]: [number, number, string, number]): string {
  const i = at % (text.length + 1);
  if (op === 0) return text.slice(0, i) + piece + text.slice(i);
  if (op === 1) return text.slice(0, i) + text.slice(i + 1 + n);
  if (op === 2) {
    const values = [...text.matchAll(/: |- /g)].map((m) => m.index + 2);
    const v = values[at % Math.max(1, values.length)] ?? i;
    return text.slice(0, v) + piece + text.slice(v);
  }
  const lines = text.split('\n');
  const l = at % lines.length;
  if (op === 3) lines[l] = n % 2 === 0 ? ` ${lines[l] ?? ''}` : (lines[l] ?? '').replace(/^ {1,2}/, '');
  else if (op === 4) lines[l] = piece + (lines[l] ?? '');
  else lines.splice(l, 0, lines[l] ?? '');
  return lines.join('\n');
}
// Valid documents too (most random ones are refused), so that values, not only refusals, are compared.
const validSegment = fc.record({
  apiVersion: fc.constant('airlock.dev/v1'),
  kind: fc.constant('Segment'),
  metadata: fc.constant({ name: 'a' }),
  spec: fc.record({ selector: fc.record({ namespace: fc.constantFrom('agents', 'r-*', 'x'), serviceAccounts: maybe(list(fc.constantFrom('r-*', 'bot', 'a.b'))), labels: maybe(fc.dictionary(fc.constantFrom('team', 'tier', 'app.kubernetes.io/name'), fc.constantFrom('x', 'gold', 'yes', 'on', '1.10', 'null-ish'), { minKeys: 1, maxKeys: 2 })) }, { requiredKeys: ['namespace'] }) }),
});
const validRule = fc.record({
  methods: maybe(list(fc.constantFrom('GET', 'POST'))),
  paths: maybe(list(fc.constantFrom('/v1/*', '/health', '/*', '/v1/search'))),
  mcp: maybe(fc.record({ methods: list(fc.constantFrom('tools/call', 'tools/*')), tools: list(fc.constantFrom('search_*', 'x')) })),
  headers: maybe(list(fc.oneof(fc.record({ name: fc.constantFrom('x-tenant', 'X-Tenant'), values: fc.constantFrom(['acme'], ['a b', 'yes']) }), fc.record({ name: fc.constant('x-debug'), present: fc.boolean() })))),
}, { requiredKeys: [] });
const validPolicy = fc.record({
  apiVersion: fc.constant('airlock.dev/v1'),
  kind: fc.constant('Policy'),
  metadata: fc.constant({ name: 'p' }),
  spec: fc.record({
    from: fc.constant({ segments: ['a'] }),
    to: fc.record({ hosts: fc.array(fc.constantFrom('api.example.com', '*.example.com'), { minLength: 1, maxLength: 2 }), ports: maybe(list(fc.constantFrom(443, 80, 8080, 65535))) }, { requiredKeys: ['hosts'] }),
    rules: maybe(list(validRule)),
    action: fc.constantFrom('allow', 'deny'),
    mode: maybe(fc.constantFrom('enforce', 'dry-run')),
  }, { requiredKeys: ['from', 'to', 'action'] }),
});
const documents = fc.oneof(
  fc.array(fc.oneof(segment, policy), { minLength: 1, maxLength: 3 }),
  fc.tuple(validSegment, fc.array(validPolicy, { maxLength: 2 })).map(([seg, pols]) => [seg, ...pols.map((p, i) => ({ ...p, metadata: { name: `p${i}` } }))]),
);
const bundle = fc.tuple(documents.chain((docs) => fc.tuple(fc.constant(docs), fc.array(style, { minLength: docs.length, maxLength: docs.length }))), fc.array(edit, { maxLength: 2 })).map(([[docs, styles], edits]) =>
  edits.reduce(applyEdit, docs.map((d, i) => stringify(d, styles[i])).join('---\n')),
);

/** Small limits, so that texts reach them: all at once, and one at a time. */
const SMALL: YamlLimits = { depth: 5, mappingKeys: 4, documents: 2, nodes: 30, aliases: 1 };
const LIMITS = [FILE_LIMITS, ADMIN_LIMITS, SMALL, { ...FILE_LIMITS, depth: 6 }, { ...FILE_LIMITS, depth: 7 }, { ...FILE_LIMITS, documents: 2 }, { ...ADMIN_LIMITS, nodes: 40 }, { ...FILE_LIMITS, mappingKeys: 4 }];

describe('fast YAML pass (fuzz)', () => {
  it('where the fast pass reads a text, `yaml` reads the same documents, without an error', () => {
    let read = 0;
    fuzz(fc.property(bundle, (text) => {
      const fast = new FastDocuments(text, FILE_LIMITS);
      const roots = [...fast];
      if (fast.failed) return;
      read++;
      const docs = yamlDocuments(text);
      expect(docs.flatMap((d) => [...d.errors, ...d.warnings].map((e) => e.message))).toEqual([]);
      expect(roots.map(shape)).toEqual(docs.map((d) => shape(treeOf(d.contents))));
      // Where each document starts (its `at`); a scalar root is never a valid document, so never reported from here.
      const at = (n: TreeNode | null): number | undefined => (n?.kind === 'scalar' ? undefined : n?.pos);
      expect(roots.map(at)).toEqual(docs.map((d) => at(treeOf(d.contents))));
    }), 500);
    // The texts must exercise the fast pass, not only the fallback.
    expect(read).toBeGreaterThan(0);
  });

  it('a policy text is accepted or refused alike (same documents, same messages) by the fast path and by `yaml` alone, within any limits', () => {
    fuzz(fc.property(bundle, fc.constantFrom(...LIMITS), (text, limits) => {
      const fast = outcome(() => parsePolicyDocuments(text, 'p.yaml', new Set(), limits).ordered);
      const reference = outcome(() => parsePolicyBundle(text, 'p.yaml', new Set(), limits).ordered);
      expect(fast).toEqual(reference);
    }), 500);
  });
});
