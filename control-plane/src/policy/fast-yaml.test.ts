import { describe, expect, it } from 'vitest';
import { FastDocuments } from './fast-yaml.ts';
import { parsePolicyBundle, parsePolicyText } from './load.ts';
import { FILE_LIMITS } from './yaml-limits.ts';

// parsePolicyText reads with the fast pass first; parsePolicyBundle always reads with `yaml` (with
// positions). Whatever the text, both must accept the same documents with the same values, or refuse
// them with the same messages.
const outcome = (read: () => unknown): unknown => {
  try {
    return read();
  } catch (err) {
    return `refused: ${err instanceof Error ? err.message : String(err)}`;
  }
};
const agree = (text: string): void => {
  expect(outcome(() => parsePolicyText(text, 'p.yaml'))).toEqual(outcome(() => parsePolicyBundle(text, 'p.yaml').docs));
};
/** Whether the fast pass reads `text` itself (rather than leaving it to `yaml`). */
const fastReads = (text: string): boolean => {
  const documents = new FastDocuments(text, FILE_LIMITS);
  Array.from(documents);
  return !documents.failed;
};

const segment = (selector: string, name = 'a'): string => `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: ${name} }\nspec:\n  selector: ${selector}\n`;
const policy = (to: string, extra = ''): string =>
  `apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec:\n  from: { segments: [a] }\n  to: ${to}\n  action: allow\n${extra}`;
const bundle = (...docs: string[]): string => docs.join('---\n');

describe('fast YAML pass', () => {
  // Texts the fast pass reads itself: values must be what `yaml` (YAML 1.2 core schema) reads.
  it.each([
    ['block and flow styles, quotes, comments', bundle(segment('{ namespace: "agents", serviceAccounts: [\'r-*\', bot] }  # trailing'), policy('{ hosts: ["api.example.com"], ports: [443] }'))],
    ['YAML 1.1 booleans and timestamps stay strings', segment('{ labels: { a: "x", b: "y" } }').replace('"x"', 'yes').replace('"y"', '2001-12-14')],
    ['on/off/y/n are strings too', segment('{ labels: { a: on, b: off, c: y, d: n, e: No } }')],
    ['ports in hex, octal (0o), leading zeros, a sign, a float and an exponent', bundle(segment('{ namespace: x }'), policy('{ hosts: [h.example.com], ports: [0x50, 0o17, 080, +443, 443.0, 1e3] }'))],
    ['present: true, True and TRUE', bundle(segment('{ namespace: x }'), policy('{ hosts: [h.example.com] }', '  rules: [ { headers: [ { name: a, present: True }, { name: b, present: TRUE }, { name: c, present: false } ] } ]\n'))],
    ['quoted keys, and a flow mapping as the whole document', bundle(`"apiVersion": airlock.dev/v1\n'kind': Segment\nmetadata: { "name": a }\nspec: { selector: { namespace: x } }\n`, '{ apiVersion: airlock.dev/v1, kind: Segment, metadata: { name: b }, spec: { selector: { namespace: x } } }\n')],
    ['document markers: a leading ---, and ... ends', `---\n${segment('{ namespace: x }')}...\n---\n${segment('{ namespace: y }', 'b')}...\n`],
    ['content on the --- line', `--- { apiVersion: airlock.dev/v1, kind: Segment, metadata: { name: a }, spec: { selector: { namespace: x } } }\n`],
    ['comments before and between', `# head\n\n${segment('{ namespace: x }')}# between\n---\n# inside\n${segment('{ namespace: y }', 'b')}`],
    ['an explicit key', `? apiVersion\n: airlock.dev/v1\nkind: Segment\nmetadata: { name: a }\nspec: { selector: { namespace: x } }\n`],
    ['a flow sequence of single-pair mappings is not a field list', bundle(segment('{ namespace: x }'), policy('{ hosts: [h.example.com, a: b] }'))],
  ])('reads %s as yaml does', (_name, text) => {
    expect(fastReads(text)).toBe(true);
    agree(text);
  });

  // Texts the fast pass does not read: `yaml` decides, whatever it decides.
  it.each([
    ['a duplicate key', segment('{ namespace: x, namespace: y }')],
    ['a duplicate top-level key', `${segment('{ namespace: x }')}kind: Policy\n`],
    ['an anchor', segment('&sel { namespace: x }')],
    ['an alias', bundle(segment('{ namespace: &ns x }'), segment('{ namespace: *ns }', 'b'))],
    ['a merge key with an alias', `${segment('&s { namespace: x }')}---\n${segment('{ <<: *s }', 'b')}`],
    ['a tag', segment('{ namespace: !!str 123 }')],
    ['an unknown tag', segment('{ namespace: !custom x }')],
    ['a %YAML 1.1 directive (yes reads as a boolean there)', `%YAML 1.1\n---\n${segment('{ labels: { a: yes } }')}`],
    ['a %YAML 1.2 directive', `%YAML 1.2\n---\n${segment('{ namespace: x }')}`],
    ['CRLF line ends', segment('{ namespace: x }').replaceAll('\n', '\r\n')],
    ['a byte-order mark', `\uFEFF${segment('{ namespace: x }')}`],
    ['a NUL', `${segment('{ namespace: x }')}\u0000`],
    ['an empty value', bundle(segment('{ namespace: x }'), policy('{ hosts: [h.example.com] }', '  mode:\n'))],
    ['an empty document (a null root to yaml)', `${segment('{ namespace: x }')}---\n---\n${segment('{ namespace: y }', 'b')}`],
    ['a trailing document marker', `${segment('{ namespace: x }')}---\n`],
    // Found by fast-yaml.fuzz.test.ts: `yaml` reads an empty document at a `...` that ends none, js-yaml nothing.
    ['a document end marker before any document', `...\n${segment('{ namespace: x }')}`],
    ['a document end marker after comments, before any document', `# c\n\n... # end\n${segment('{ namespace: x }')}`],
    ['two document end markers in a row', `${segment('{ namespace: x }')}...\n  # c\n...\n${segment('{ namespace: y }', 'b')}`],
    ['a multi-line plain scalar', segment('\n    namespace: ag\n      ents')],
    ['a folded and a literal block scalar', bundle(segment('\n    namespace: >-\n      x\n'), segment('\n    namespace: |-\n      y\n', 'b'))],
    ['escapes in double quotes', segment('{ namespace: "\\x61gents" }')],
    ['a doubled single quote', segment("{ namespace: 'it''s' }")],
    ['a tab before a value', segment('{ namespace:\tx }')],
    ['a tab as indentation', 'apiVersion: airlock.dev/v1\nkind: Segment\nmetadata:\n\tname: a\nspec: { selector: { namespace: x } }\n'],
    ['a flow collection less indented than its key', segment('{ namespace: x,\nserviceAccounts: [a] }')],
    ['a sequence as a key', `${segment('{ namespace: x }')}? [kind]\n: Policy\n`],
    ['a number as a key', `${segment('{ namespace: x }')}1: x\n`],
    ['a comment without a space before it', segment('{ namespace: x }#c')],
    ['trailing content after a flow mapping', segment('{ namespace: x } y')],
    ['an unterminated flow mapping', segment('{ namespace: x')],
    ['an unterminated quote across a document marker', `${segment('{ namespace: "x')}---\n${segment('{ namespace: y" }', 'b')}`],
    ['more labels than allowed', segment(`{ labels: { ${Array.from({ length: 40 }, (_, i) => `k${i}: v`).join(', ')} } }`)],
    ['a scalar document', 'hello\n'],
    ['a root that is a null', '~\n'],
  ])('leaves %s to yaml', (_name, text) => {
    expect(fastReads(text)).toBe(false);
    agree(text);
  });

  // Texts the fast pass reads but validation refuses: refused by `yaml` with the same messages.
  it.each([
    ['a merge key', bundle(segment('{ namespace: x }'), segment('{ <<: { namespace: x } }', 'b'))],
    ['a null', bundle(segment('{ namespace: x }'), policy('{ hosts: [h.example.com] }', '  mode: ~\n'))],
    ['a key over 1024 characters', segment(`{ ${'k'.repeat(1100)}: x }`)],
    ['a sequence document', '- a\n- b\n'],
    ['yes where a boolean is expected', bundle(segment('{ namespace: x }'), policy('{ hosts: [h.example.com] }', '  rules: [ { headers: [ { name: a, present: yes } ] } ]\n'))],
    ['a port as a string', bundle(segment('{ namespace: x }'), policy('{ hosts: [h.example.com], ports: ["80"] }'))],
    ['a port with a fraction', bundle(segment('{ namespace: x }'), policy('{ hosts: [h.example.com], ports: [80.5] }'))],
    ['a number as a label value', segment('{ labels: { tier: 1 } }')],
  ])('refuses %s as yaml does', (_name, text) => {
    agree(text);
    expect(outcome(() => parsePolicyText(text, 'p.yaml'))).toMatch(/^refused: invalid policy:\n {2}- p\.yaml:\d+:\d+: /);
  });

  it('leaves a mapping over the keys limit to yaml, which refuses it', () => {
    // Found by fast-yaml.fuzz.test.ts: the fast pass bounded keys by MAX_LABELS only, so under a lower limit it accepted what `yaml` refused.
    const text = bundle(segment('{ namespace: x }'), policy('{ hosts: [h.example.com] }', '  rules: []\n  mode: enforce\n'));
    const limits = { ...FILE_LIMITS, mappingKeys: 4 };
    const documents = new FastDocuments(text, limits);
    Array.from(documents);
    expect(documents.failed).toBe(true);
    expect(outcome(() => parsePolicyText(text, 'p.yaml', new Set(), limits))).toMatch(/^refused: invalid policy:\n {2}- p\.yaml:\d+:\d+: a mapping with more than 4 keys \(the limit\)$/);
  });

  it('agrees with yaml on valid documents it reads, positions included', () => {
    const text = bundle(`# c\n\n${segment('{ namespace: x }')}`, `  ${policy('{ segments: [a] }').replaceAll('\n', '\n  ')}`.trimEnd() + '\n', `{ apiVersion: airlock.dev/v1, kind: Segment, metadata: { name: b }, spec: { selector: { namespace: y } } }\n`);
    expect(fastReads(text)).toBe(true);
    agree(text);
    const docs = parsePolicyText(text, 'p.yaml');
    expect([...docs.segments, ...docs.policies].map((d) => d.at)).toEqual(['p.yaml:3:1', 'p.yaml:17:1', 'p.yaml:9:3']);
  });

  it('agrees with yaml on a few hundred mutations of a policy bundle', () => {
    const base = bundle(
      segment('\n    namespace: "agents"\n    serviceAccounts: [ \'r-*\', bot ]\n    labels: { team: "x", tier: gold }'),
      policy('\n    hosts: ["api.example.com", \'*.svc.example.com\']\n    ports: [443, 8080]', '  mode: dry-run\n  rules:\n    - methods: [GET, POST]\n      paths: ["/v1/*"]\n      headers:\n        - { name: X-Tenant, values: [acme] }\n        - name: x-debug\n          present: false\n    - mcp: { tools: ["search_*"], methods: [tools/call] }\n'),
    );
    expect(fastReads(base)).toBe(true);
    const pieces = [' ', '\n', '\t', ':', '-', '[', ']', '{', '}', ',', '#', '"', "'", '&a ', '*a', '!!str ', '|', '>', '? ', '%', '\\', 'x', '0', '.', '~', '---\n', '...\n', '- ', ': ', 'yes', 'null', '0x1F', '1e3', '2001-12-14', '<<: ', '\r\n'];
    let seed = 7;
    const random = (n: number): number => Math.floor(((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * n);
    let read = 0;
    for (let i = 0; i < 400; i++) {
      let text = base;
      for (let m = 0, count = 1 + random(2); m < count; m++) {
        const at = random(text.length + 1);
        const op = random(3);
        if (op === 0) text = text.slice(0, at) + (pieces[random(pieces.length)] ?? '') + text.slice(at);
        else if (op === 1) text = text.slice(0, at) + text.slice(at + 1 + random(3));
        else {
          const lines = text.split('\n');
          const line = random(lines.length);
          lines[line] = (random(2) === 0 ? ' ' : '') + (lines[line] ?? '').replace(/^ {2}/, random(2) === 0 ? '' : '   ');
          text = lines.join('\n');
        }
      }
      if (fastReads(text)) read++;
      agree(text);
    }
    // The mutations must exercise the fast pass, not only the fallback.
    expect(read).toBeGreaterThan(50);
  });

  it('agrees with yaml on every kind of plain scalar, wherever a value is read', () => {
    const scalars = ['yes', 'no', 'on', 'off', 'y', 'Yes', 'NO', 'true', 'True', 'TRUE', 'tRue', 'false', 'null', 'Null', 'NULL', 'nULL', '~', '0x1F', '0X1F', '0o17', '0O17', '017', '08', '1_000', '1e3', '1E3', '1.e3', '.5', '-.5', '.inf', '-.Inf', '+.INF', '.nan', '.NaN', 'NaN', 'inf', '2001-12-14', '2001-12-14t21:59:43.10-05:00', '12:30:00', '1:20', '0b101', '+12', '-0', '0', '00', '65535', '65536', '443', '443.0', '4.43e2', '=', '<<', 'a b', 'a#b', '-a', 'x.y.z', 'GET', '/v1/*', '"q"', "'s'", '""', "''", '" lead"'];
    const slots = [
      (v: string): string => segment(`{ namespace: ${v} }`),
      (v: string): string => segment(`{ labels: { team: ${v} } }`),
      (v: string): string => segment(`{ labels: { ${v}: x } }`),
      (v: string): string => bundle(segment('{ namespace: x }'), policy(`{ hosts: [h.example.com], ports: [${v}] }`)),
      (v: string): string => bundle(segment('{ namespace: x }'), policy('{ hosts: [h.example.com] }', `  rules: [ { headers: [ { name: x-a, present: ${v} } ] } ]\n`)),
      (v: string): string => bundle(segment('{ namespace: x }'), policy('{ hosts: [h.example.com] }', `  mode: ${v}\n`)),
    ];
    let accepted = 0;
    for (const slot of slots) {
      for (const v of scalars) {
        const text = slot(v);
        agree(text);
        if (typeof outcome(() => parsePolicyText(text, 'p.yaml')) !== 'string') accepted++;
      }
    }
    // Enough of them valid that values, not only refusals, are compared.
    expect(accepted).toBeGreaterThan(50);
  });
});
