// Issue 9: YAML nested 10,000 levels deep was reported as "Maximum call stack size exceeded" at
// some file position. It is refused at the level over the limit, naming the limit, wherever policy
// YAML is read: `airlock validate`, a control plane's policy file (the admin API: see
// a-viewer-cannot-stall-decisions.test.ts and control-plane/src/api/admin/admin-limits.test.ts).
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const BIN = join(import.meta.dirname, '..', 'cli', 'bin', 'airlock.js');
const dir = mkdtempSync(join(tmpdir(), 'airlock-deep-'));

function airlock(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: dir, timeout: 20_000 }, (err, _stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stderr });
    });
  });
}

describe('deeply nested policy YAML', () => {
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each([
    ['flow sequences', '['.repeat(10_000), '1:65'],
    ['flow mappings', '{a: '.repeat(10_000), '1:257'],
    ['block sequences', '- '.repeat(10_000), '1:129'],
    ['indented block sequences', Array.from({ length: 10_000 }, (_, i) => `${' '.repeat(i)}- a:`).join('\n'), '64:67'],
  ])('in %s is refused by airlock validate with its position and the limit', async (name, text, at) => {
    const file = join(dir, `${name.replaceAll(' ', '-')}.yaml`);
    writeFileSync(file, text);
    const r = await airlock(['validate', '-f', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`airlock: invalid policy:\n  - ${file}:${at}: more than 64 levels of nesting (the limit)\n`);
  });

  it('is refused as a control plane policy file before anything listens', async () => {
    const file = join(dir, 'cp.yaml');
    writeFileSync(file, '['.repeat(10_000));
    const r = await airlock(['control-plane', '--data-dir', join(dir, 'data'), '--grpc-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--policy-file', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}:1:65: more than 64 levels of nesting (the limit)`);
    expect(r.stderr).not.toContain('Maximum call stack');
  });

  it('a mapping of 100,000 keys is refused by airlock validate at the key over the limit, with another file beside it', async () => {
    const bundle = join(dir, 'bundle');
    mkdirSync(bundle);
    const wide = join(bundle, 'wide.yaml');
    writeFileSync(wide, `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: wide }\nspec:\n${Array.from({ length: 100_000 }, (_, i) => `  k${i}: ${i}`).join('\n')}\n`);
    const other = join(bundle, 'other.yaml');
    writeFileSync(other, 'apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: other }\nspec: { selector: { namespace: demo } }\n');
    const r = await airlock(['validate', '-f', bundle]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/wide\.yaml:69:3: a mapping with more than 64 keys \(the limit\)/);
  });
});
