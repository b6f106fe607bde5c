// Rewrites the values table in charts/airlock/README.md from the chart's values.yaml (the `# --`
// comment above each key, as helm-docs reads them) and values.schema.json (the types), so the docs
// are the chart's own. `--check` fails when the table is stale or a value has no description.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';

export const chartDir = join(import.meta.dirname, '..', 'charts', 'airlock');
const readmePath = join(chartDir, 'README.md');
const START = '<!-- values -->';
const END = '<!-- /values -->';

export interface ValueDoc {
  /** Dotted path, e.g. `controlPlane.replicas`. */
  readonly key: string;
  readonly description: string;
}

interface SchemaNode {
  readonly type?: string | readonly string[];
  readonly enum?: readonly unknown[];
  readonly properties?: Readonly<Record<string, SchemaNode>>;
}

/**
 * The documented keys of values.yaml, in file order: a `# --` comment line starts a description,
 * following `#` lines continue it, and the next key line is the key it describes. The path comes
 * from indentation (values.yaml is block YAML, two spaces a level).
 */
export function documentedValues(valuesYaml: string): ValueDoc[] {
  const docs: ValueDoc[] = [];
  const stack: { indent: number; key: string }[] = [];
  let pending: string[] | undefined;
  for (const line of valuesYaml.split('\n')) {
    const comment = /^\s*#\s?(.*)$/.exec(line);
    if (comment !== null) {
      const text = comment[1] ?? '';
      if (text.startsWith('-- ')) pending = [text.slice(3).trim()];
      else if (pending !== undefined) pending.push(text.trim());
      continue;
    }
    const keyLine = /^( *)([A-Za-z0-9_-]+):/.exec(line);
    if (keyLine === null) {
      if (line.trim() === '') pending = undefined;
      continue;
    }
    const indent = (keyLine[1] ?? '').length;
    while (stack.length > 0 && (stack[stack.length - 1]?.indent ?? 0) >= indent) stack.pop();
    stack.push({ indent, key: keyLine[2] ?? '' });
    if (pending !== undefined) docs.push({ key: stack.map((s) => s.key).join('.'), description: pending.join(' ') });
    pending = undefined;
  }
  return docs;
}

/** Paths of the leaves of values (scalars, lists, empty maps). */
function leaves(value: unknown, prefix = ''): string[] {
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length > 0) {
    return Object.entries(value).flatMap(([k, v]) => leaves(v, prefix === '' ? k : `${prefix}.${k}`));
  }
  return [prefix];
}

function at(root: unknown, key: string): unknown {
  return key.split('.').reduce<unknown>((node, k) => (node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[k] : undefined), root);
}

function schemaAt(schema: SchemaNode, key: string): SchemaNode | undefined {
  return key.split('.').reduce<SchemaNode | undefined>((node, k) => node?.properties?.[k], schema);
}

/** Leaves of values.yaml that neither they nor a parent describe: each is a defect of the docs. */
export function undocumented(valuesYaml: string): string[] {
  const documented = new Set(documentedValues(valuesYaml).map((d) => d.key));
  return leaves(parse(valuesYaml)).filter((leaf) => {
    const parts = leaf.split('.');
    return !parts.some((_, i) => documented.has(parts.slice(0, i + 1).join('.')));
  });
}

function cell(s: string): string {
  return s.replaceAll('|', '\\|');
}

function typeOf(node: SchemaNode | undefined): string {
  if (node?.enum !== undefined) return node.enum.map((v) => String(v)).join(' \\| ');
  const t = node?.type;
  return t === undefined ? '' : Array.isArray(t) ? t.join(' \\| ') : String(t);
}

export function valuesTable(valuesYaml: string, schema: SchemaNode): string {
  const values: unknown = parse(valuesYaml);
  const rows = documentedValues(valuesYaml).map(({ key, description }) => {
    const def = JSON.stringify(at(values, key));
    return `| \`${key}\` | ${typeOf(schemaAt(schema, key))} | \`${cell(def)}\` | ${cell(description)} |`;
  });
  return ['| key | type | default | description |', '|---|---|---|---|', ...rows].join('\n');
}

export function renderChartDocs(readme: string): string {
  const valuesYaml = readFileSync(join(chartDir, 'values.yaml'), 'utf8');
  const schema = JSON.parse(readFileSync(join(chartDir, 'values.schema.json'), 'utf8')) as SchemaNode;
  const a = readme.indexOf(START);
  const b = readme.indexOf(END);
  if (a < 0 || b < a) throw new Error(`charts/airlock/README.md lacks the markers ${START} … ${END}`);
  return `${readme.slice(0, a + START.length)}\n${valuesTable(valuesYaml, schema)}\n${readme.slice(b)}`;
}

if (import.meta.main) {
  const missing = undocumented(readFileSync(join(chartDir, 'values.yaml'), 'utf8'));
  if (missing.length > 0) {
    console.error(`values.yaml: no "# --" description for ${missing.join(', ')}`);
    process.exit(1);
  }
  const readme = readFileSync(readmePath, 'utf8');
  const fresh = renderChartDocs(readme);
  if (process.argv.includes('--check')) {
    if (fresh !== readme) {
      console.error('charts/airlock/README.md values table is stale: run `node scripts/chart-docs.ts`.');
      process.exit(1);
    }
  } else {
    writeFileSync(readmePath, fresh);
  }
}
