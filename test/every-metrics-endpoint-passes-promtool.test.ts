// Issue 10 item 5: what Prometheus scrapes from every Airlock process passes `promtool check metrics`
// (Debian's prometheus package): the control plane's :15014/metrics and a sidecar's :15020/metrics,
// scraped from real processes after allowed and denied calls, so the labelled series exist too.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Mesh } from './support/mesh.ts';
import { startStandardMesh } from './support/standard-mesh.ts';

const hasPromtool = spawnSync('promtool', ['--version']).status === 0;
if (!hasPromtool && process.env['CI'] === 'true') throw new Error('promtool (Debian package prometheus) is required in CI');

/** promtool's verdict on a scrape: its exit code and what it says (nothing when all is well). */
function promtool(exposition: string): { status: number | null; problems: string } {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: exposition, encoding: 'utf8' });
  return { status: r.status, problems: (r.stdout + r.stderr).trim() };
}

describe.skipIf(!hasPromtool)('every /metrics endpoint', () => {
  let mesh: Mesh;
  beforeAll(async () => {
    mesh = await startStandardMesh();
    expect((await mesh.call('planner', 'GET', 'http://researcher.agents/v1/search?q=metrics')).status).toBe(200);
    expect((await mesh.call('researcher', 'GET', 'http://planner.agents/v1/anything')).status).toBe(403);
  });
  afterAll(async () => mesh.close());

  it.each([
    ['the control plane (:15014)', (m: Mesh) => m.httpPort],
    ['the planner sidecar (:15020)', (m: Mesh) => m.agent('planner').adminPort],
    ['the researcher sidecar (:15020)', (m: Mesh) => m.agent('researcher').adminPort],
  ])('passes promtool check metrics: %s', async (_name, port) => {
    const text = await (await fetch(`http://127.0.0.1:${port(mesh)}/metrics`)).text();
    expect(text).toMatch(/^airlock_process_cpu_seconds_total/m); // Node's default metrics are there
    expect(promtool(text)).toEqual({ status: 0, problems: '' });
  });

  it("the README documents every metric Airlock itself exports (Node's defaults aside)", async () => {
    const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');
    const names = new Set<string>();
    for (const port of [mesh.httpPort, mesh.agent('planner').adminPort]) {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      for (const m of text.matchAll(/^# HELP (airlock_[a-z0-9_]+) /gm)) if (m[1] !== undefined && !/^airlock_(process|nodejs)_/.test(m[1])) names.add(m[1]);
    }
    expect(names.size).toBeGreaterThan(20);
    expect([...names].filter((n) => !readme.includes(n)).sort()).toEqual([]);
  });

  it('promtool does catch a gauge named _total (the check is live)', () => {
    const bad = '# HELP x_total A gauge.\n# TYPE x_total gauge\nx_total 1\n';
    expect(promtool(bad).problems).toMatch(/non-counter metrics should not have "_total" suffix/);
  });
});
