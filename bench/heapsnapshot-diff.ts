// Compares two V8 heap snapshots (.heapsnapshot, e.g. the soak's control-plane-warm and -end): the
// objects' self sizes and counts summed by type and constructor name, and the groups that changed
// most between the two. No dependency: the format is V8's JSON (snapshot.meta names the fields).
// Run: node bench/heapsnapshot-diff.ts BEFORE.heapsnapshot AFTER.heapsnapshot [TOP]
import { readFileSync } from 'node:fs';

interface HeapSnapshot {
  readonly snapshot: { readonly meta: { readonly node_fields: string[]; readonly node_types: [string[], ...unknown[]] } };
  readonly nodes: number[];
  readonly strings: string[];
}

interface Group {
  count: number;
  bytes: number;
}

// Strings and code are many small objects with content for names: one group per type.
const BY_TYPE_ONLY = new Set(['string', 'concatenated string', 'sliced string', 'code', 'number', 'bigint']);

/** Self size and count per `type name` group. */
export function groups(snapshot: HeapSnapshot): Map<string, Group> {
  const fields = snapshot.snapshot.meta.node_fields;
  const [typeAt, nameAt, sizeAt] = [fields.indexOf('type'), fields.indexOf('name'), fields.indexOf('self_size')];
  const types = snapshot.snapshot.meta.node_types[0];
  const out = new Map<string, Group>();
  for (let i = 0; i < snapshot.nodes.length; i += fields.length) {
    const type = types[snapshot.nodes[i + typeAt] ?? 0] ?? '?';
    const name = BY_TYPE_ONLY.has(type) ? '' : (snapshot.strings[snapshot.nodes[i + nameAt] ?? 0] ?? '?').slice(0, 70);
    const key = `${type} ${name}`.trim();
    const g = out.get(key) ?? { count: 0, bytes: 0 };
    g.count += 1;
    g.bytes += snapshot.nodes[i + sizeAt] ?? 0;
    out.set(key, g);
  }
  return out;
}

function main(): void {
  const [beforeFile, afterFile, topArg] = process.argv.slice(2);
  if (beforeFile === undefined || afterFile === undefined) {
    console.error('Usage: node bench/heapsnapshot-diff.ts BEFORE.heapsnapshot AFTER.heapsnapshot [TOP]');
    process.exit(2);
  }
  const top = Number(topArg ?? 25);
  const [before, after] = [beforeFile, afterFile].map((f) => groups(JSON.parse(readFileSync(f, 'utf8')) as HeapSnapshot));
  if (before === undefined || after === undefined) return;
  const total = (m: Map<string, Group>): Group => [...m.values()].reduce((a, g) => ({ count: a.count + g.count, bytes: a.bytes + g.bytes }), { count: 0, bytes: 0 });
  const [tb, ta] = [total(before), total(after)];
  const kb = (n: number): string => (n / 1024).toFixed(1);
  console.log(`total: ${tb.count} → ${ta.count} objects, ${kb(tb.bytes)} → ${kb(ta.bytes)} KB (${ta.bytes >= tb.bytes ? '+' : ''}${kb(ta.bytes - tb.bytes)})`);
  const rows = [...new Set([...before.keys(), ...after.keys()])].map((key) => {
    const [b, a] = [before.get(key) ?? { count: 0, bytes: 0 }, after.get(key) ?? { count: 0, bytes: 0 }];
    return { key, b, a, dBytes: a.bytes - b.bytes, dCount: a.count - b.count };
  });
  const print = (title: string, sorted: typeof rows): void => {
    console.log(`\n${title}\n| group | count | self KB | Δ count | Δ KB |\n|---|---|---|---|---|`);
    for (const r of sorted.slice(0, top)) console.log(`| ${r.key.replaceAll('|', '\\|')} | ${r.b.count} → ${r.a.count} | ${kb(r.b.bytes)} → ${kb(r.a.bytes)} | ${r.dCount >= 0 ? '+' : ''}${r.dCount} | ${r.dBytes >= 0 ? '+' : ''}${kb(r.dBytes)} |`);
  };
  print('Grew most (self size):', rows.filter((r) => r.dBytes > 0).sort((x, y) => y.dBytes - x.dBytes));
  print('Grew most (count):', rows.filter((r) => r.dCount > 0).sort((x, y) => y.dCount - x.dCount));
  print('Shrank most (self size):', rows.filter((r) => r.dBytes < 0).sort((x, y) => x.dBytes - y.dBytes));
}

if (import.meta.main) main();
