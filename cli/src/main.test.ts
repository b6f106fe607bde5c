import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const AIRLOCK_BIN = fileURLToPath(new URL('../bin/airlock.js', import.meta.url));

/** Every module URL `airlock <args>` loads, recorded by a load hook. */
function modulesLoadedBy(args: readonly string[]): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-modules-'));
  try {
    const hook = join(dir, 'hook.mjs');
    writeFileSync(
      hook,
      `import { registerHooks } from 'node:module';
const loaded = [];
registerHooks({ load(url, context, next) { loaded.push(url); return next(url, context); } });
process.on('exit', () => process.stderr.write('LOADED ' + JSON.stringify(loaded) + '\\n'));
`,
    );
    const r = spawnSync(process.execPath, ['--import', hook, AIRLOCK_BIN, ...args], { encoding: 'utf8', env: { ...process.env, NODE_DISABLE_COMPILE_CACHE: '1' } });
    expect(r.status).toBe(0);
    const line = r.stderr.split('\n').find((l) => l.startsWith('LOADED '));
    return JSON.parse(line?.slice('LOADED '.length) ?? '[]') as string[];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('airlock command dispatch', () => {
  // bench/README.md "Less code in the heap": a sidecar process must not hold the control plane's modules.
  it('loads a command\'s modules only when it runs: a sidecar loads no control-plane module', () => {
    const loaded = modulesLoadedBy(['sidecar', '--help']);
    expect(loaded.some((u) => u.includes('/sidecar/src/'))).toBe(true);
    expect(loaded.filter((u) => u.includes('/control-plane/src/'))).toEqual([]);
  });
});
