// Rewrites the config reference tables in README.md from the config definitions, so the docs are
// the code's own. `--check` fails when README.md is out of date.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { controlPlaneConfig } from '@airlock/control-plane/config';
import { sidecarConfig } from '@airlock/sidecar/config';

const readmePath = join(import.meta.dirname, '..', 'README.md');

export function renderConfigDocs(readme: string): string {
  const tables: Record<string, string> = { 'control-plane': controlPlaneConfig.docs(), sidecar: sidecarConfig.docs() };
  let out = readme;
  for (const [name, table] of Object.entries(tables)) {
    const start = `<!-- config:${name} -->`;
    const end = `<!-- /config:${name} -->`;
    const a = out.indexOf(start);
    const b = out.indexOf(end);
    if (a < 0 || b < a) throw new Error(`README.md lacks the markers ${start} … ${end}`);
    out = `${out.slice(0, a + start.length)}\n${table}\n${out.slice(b)}`;
  }
  return out;
}

if (import.meta.main) {
  const readme = readFileSync(readmePath, 'utf8');
  const fresh = renderConfigDocs(readme);
  if (process.argv.includes('--check')) {
    if (fresh !== readme) {
      console.error('README.md config reference is stale: run `node scripts/config-docs.ts`.');
      process.exit(1);
    }
  } else {
    writeFileSync(readmePath, fresh);
  }
}
