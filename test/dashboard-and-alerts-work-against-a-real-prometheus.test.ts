// Issue 14 item 5: the Grafana dashboard and the alerting rules the Helm chart ships, proven against
// real parts. The rules as `helm template` renders them pass `promtool check rules` and the unit tests
// of test/alerts/airlock-alerts.promtool.yaml (`promtool test rules`); then a real Prometheus loads
// them while scraping a mesh this test starts (labelled as the chart's ServiceMonitor and PodMonitor
// label it), and after allowed, denied, fail-closed and refused traffic every panel's query returns
// data, every rule evaluates without error, and every metric a rule reads exists.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chartDir, find, renderChart } from './support/helm-chart.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';
import { startPrometheus, type RunningPrometheus } from './support/prometheus.ts';

const PROMTOOL = '/usr/bin/promtool';
const AGENTS = ['planner', 'researcher'] as const;
// A dry-run RateLimit of one call a day: the rate-limited panel has data, and every call still goes through.
const POLICY = `${policyYaml('agents', AGENTS, [{ name: 'planner-to-researcher', from: 'planner', to: 'researcher', methods: ['GET'], paths: ['/v1/*'] }])}---
apiVersion: airlock.dev/v1
kind: RateLimit
metadata: { name: planner-trial }
spec: { from: { segments: [planner] }, per: source, requests: 1, interval: 24h, mode: dry-run }
`;
// What the chart's ServiceMonitor gives the control plane's series (release "airlock" in "airlock-system").
const CONTROL_PLANE_LABELS = { namespace: 'airlock-system', service: 'airlock-control-plane', pod: 'airlock-control-plane-0' };
/** Metrics a rule reads that no run of this mesh can produce yet. */
const NOT_YET_EMITTED = new Set(['airlock_audit_events_dropped_total']); // arrives with the SIEM sinks (issue 14 item 2)

interface Panel {
  readonly title: string;
  readonly targets: readonly { readonly expr: string }[];
}

describe('the dashboard and the alerts against a real Prometheus', () => {
  let dir: string;
  let mesh: Mesh;
  let prometheus: RunningPrometheus;
  let api: string;
  let groups: { name: string; rules: { alert: string; expr: string }[] }[];

  const query = async (promql: string): Promise<number> => {
    const res = (await (await fetch(`${api}/api/v1/query?query=${encodeURIComponent(promql)}`)).json()) as { status: string; error?: string; data: { result: unknown[] } };
    if (res.status !== 'success') throw new Error(`${promql}: ${res.error ?? res.status}`);
    return res.data.result.length;
  };
  /** Waits (bounded) until `promql` returns at least one series; the series count. */
  const series = async (promql: string): Promise<number> => {
    const end = Date.now() + 30_000;
    let n = await query(promql);
    while (n === 0 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 500));
      n = await query(promql);
    }
    return n;
  };

  beforeAll(async () => {
    if (!existsSync(PROMTOOL)) throw new Error(`${PROMTOOL} is not installed: apt-get install prometheus (.ci/run does)`);
    dir = mkdtempSync(join(tmpdir(), 'airlock-alerts-'));
    const rule = find(renderChart({ set: ['metrics.prometheusRule.enabled=true'] }), 'PrometheusRule');
    groups = (rule.spec as { groups: typeof groups }).groups;
    writeFileSync(join(dir, 'rules.yaml'), stringify({ groups }));
    copyFileSync(join(import.meta.dirname, 'alerts', 'airlock-alerts.promtool.yaml'), join(dir, 'airlock-alerts.promtool.yaml'));

    // Short SVIDs: renewals go on all through the test, so issuance panels have data after the control plane restarts.
    mesh = await startMesh({ agents: AGENTS, policy: POLICY, controlPlaneArgs: ['--svid-ttl', '20s'] });
    prometheus = await startPrometheus(dir, {
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: [join(dir, 'rules.yaml')],
      scrape_configs: [
        { job_name: 'control-plane', static_configs: [{ targets: [`127.0.0.1:${mesh.httpPort}`], labels: CONTROL_PLANE_LABELS }] },
        ...AGENTS.map((a) => ({ job_name: `sidecar-${a}`, static_configs: [{ targets: [`127.0.0.1:${mesh.agent(a).adminPort}`], labels: { namespace: 'agents', pod: `${a}-0` } }] })),
      ],
    });
    api = prometheus.api;
  }, 120_000);
  afterAll(async () => {
    prometheus.stop();
    await mesh.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('renders rules that promtool checks and whose unit tests pass', () => {
    const check = spawnSync(PROMTOOL, ['check', 'rules', join(dir, 'rules.yaml')], { encoding: 'utf8' });
    expect(check.stdout + check.stderr).toMatch(/SUCCESS: \d+ rules found/);
    expect(check.status).toBe(0);
    const tests = spawnSync(PROMTOOL, ['test', 'rules', 'airlock-alerts.promtool.yaml'], { cwd: dir, encoding: 'utf8' });
    expect(tests.stdout + tests.stderr).toContain('SUCCESS');
    expect(tests.status).toBe(0);
    // Every alert has a unit test that makes it fire.
    const tested = readFileSync(join(dir, 'airlock-alerts.promtool.yaml'), 'utf8');
    for (const r of groups.flatMap((g) => g.rules)) expect(tested).toMatch(new RegExp(`alertname: ${r.alert}\\n\\s+exp_alerts:\\n\\s+- exp_labels`));
  });

  it('shows data on every panel and evaluates every rule after real traffic', { timeout: 180_000 }, async () => {
    for (let i = 0; i < 6; i++) expect((await mesh.call('planner', 'GET', `http://researcher.agents/v1/q${i}`)).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await mesh.call('planner', 'DELETE', `http://researcher.agents/v1/q${i}`)).status).toBe(403);
    // A handshake that fails at researcher's inbound port (not TLS at all).
    await new Promise<void>((resolve) => {
      const s = connect(mesh.agent('researcher').inboundPort, '127.0.0.1', () => s.end('GET / HTTP/1.1\r\n\r\n'));
      s.on('close', () => resolve());
      s.on('error', () => resolve());
    });
    // A call with no control plane to decide it: refused, fail closed.
    await mesh.stopControlPlane();
    expect((await mesh.call('planner', 'GET', 'http://researcher.agents/v1/outage')).status).toBe(503);
    await mesh.startControlPlane();
    await expect.poll(async () => (await mesh.call('planner', 'GET', 'http://researcher.agents/v1/back')).status, { timeout: 30_000, interval: 500 }).toBe(200);
    // Counters start again with the control plane: a denial and a call over the dry-run RateLimit after it.
    expect((await mesh.call('planner', 'DELETE', 'http://researcher.agents/v1/again')).status).toBe(403);
    for (let i = 0; i < 2; i++) expect((await mesh.call('planner', 'GET', `http://researcher.agents/v1/again${i}`)).status).toBe(200);

    const dashboard = JSON.parse(readFileSync(join(chartDir, 'dashboards', 'airlock-mesh.json'), 'utf8')) as { panels: Panel[] };
    expect(dashboard.panels.length).toBeGreaterThanOrEqual(10);
    const empty: string[] = [];
    for (const panel of dashboard.panels) {
      for (const t of panel.targets) {
        if ((await series(t.expr.replaceAll('$__rate_interval', '1m'))) === 0) empty.push(`${panel.title}: ${t.expr}`);
      }
    }
    expect(empty).toEqual([]);

    // Every rule loaded and evaluated without error; every metric it reads is scraped.
    const rules = (await (await fetch(`${api}/api/v1/rules`)).json()) as { data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] } };
    const loaded = rules.data.groups.flatMap((g) => g.rules);
    expect(loaded.map((r) => r.name).sort()).toEqual(groups.flatMap((g) => g.rules.map((r) => r.alert)).sort());
    await expect.poll(() => loaded.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`), { timeout: 10_000 }).toEqual([]);
    const metrics = new Set(groups.flatMap((g) => g.rules.flatMap((r) => [...r.expr.matchAll(/\b(airlock_[a-z_]+)/g)].map((m) => m[1] ?? ''))));
    // A counter of refusals has no series until a refusal: Prometheus still knows it from the HELP and TYPE lines it scraped.
    const known = async (m: string): Promise<boolean> => {
      const meta = (await (await fetch(`${api}/api/v1/metadata?metric=${m}`)).json()) as { data: Record<string, unknown[]> };
      return (meta.data[m]?.length ?? 0) > 0 || (await query(`count(${m})`)) > 0;
    };
    const missing: string[] = [];
    for (const m of metrics) if (!NOT_YET_EMITTED.has(m) && !(await known(m))) missing.push(m);
    expect(missing).toEqual([]);
    // The check can fail: a name no process exposes is not known.
    expect(await known('airlock_no_such_metric_total')).toBe(false);
  });
});
