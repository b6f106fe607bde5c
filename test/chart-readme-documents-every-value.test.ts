import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { chartDir, documentedValues, renderChartDocs, undocumented } from '../scripts/chart-docs.ts';

interface SchemaNode {
  readonly properties?: Readonly<Record<string, SchemaNode>>;
  readonly additionalProperties?: unknown;
  readonly type?: unknown;
}

/** Dotted paths of every object in the schema, with whether it closes itself to unknown keys. */
function objects(node: SchemaNode, path: string): { path: string; closed: boolean }[] {
  if (node.properties === undefined) return [];
  return [{ path, closed: node.additionalProperties === false }, ...Object.entries(node.properties).flatMap(([k, v]) => objects(v, path === '' ? k : `${path}.${k}`))];
}

function mapPaths(value: unknown, path = ''): string[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [];
  return [path, ...Object.entries(value).flatMap(([k, v]) => mapPaths(v, path === '' ? k : `${path}.${k}`))];
}

describe('charts/airlock', () => {
  const valuesYaml = readFileSync(join(chartDir, 'values.yaml'), 'utf8');
  const schema = JSON.parse(readFileSync(join(chartDir, 'values.schema.json'), 'utf8')) as SchemaNode;

  it('describes every value in values.yaml', () => {
    expect(undocumented(valuesYaml)).toEqual([]);
  });

  it('holds the values table generated from values.yaml in its README', () => {
    const readme = readFileSync(join(chartDir, 'README.md'), 'utf8');
    // When this fails: run `node scripts/chart-docs.ts` and commit charts/airlock/README.md.
    expect(readme).toBe(renderChartDocs(readme));
  });

  it('has a schema closed to unknown keys for every section of values.yaml', () => {
    const schemaObjects = objects(schema, '');
    // Every mapping the chart's own values hold is described by the schema and refuses unknown keys
    // (a mapping with a `{}` default is free-form: labels, annotations, extraConfig, Kubernetes objects).
    const sections = mapPaths(parse(valuesYaml)).filter((p) => schemaObjects.some((o) => o.path === p));
    expect(sections.length).toBeGreaterThan(20);
    for (const section of sections) expect(schemaObjects.find((o) => o.path === section)?.closed, `${section || '(top)'} refuses unknown keys`).toBe(true);
    // The schema knows no value values.yaml lacks (except `global`, which Helm hands to a chart used
    // as a subchart; and fields inside a value documented as a whole, such as securityContext's).
    const props = (n: SchemaNode, p: string): string[] => Object.entries(n.properties ?? {}).flatMap(([k, v]) => [p === '' ? k : `${p}.${k}`, ...props(v, p === '' ? k : `${p}.${k}`)]);
    const wholes = documentedValues(valuesYaml).map((d) => d.key);
    const inSchema = props(schema, '').filter((p) => p !== 'global' && !wholes.some((w) => p.startsWith(`${w}.`)));
    const values = parse(valuesYaml) as unknown;
    const present = (path: string): boolean => path.split('.').reduce<{ ok: boolean; node: unknown }>((acc, k) => (acc.ok && acc.node !== null && typeof acc.node === 'object' && k in acc.node ? { ok: true, node: (acc.node as Record<string, unknown>)[k] } : { ok: false, node: undefined }), { ok: true, node: values }).ok;
    expect(inSchema.filter((p) => !present(p))).toEqual([]);
  });
});
