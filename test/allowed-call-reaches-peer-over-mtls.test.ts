import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EchoBody } from '../cli/src/demo/echo-app.ts';
import type { Mesh } from './support/mesh.ts';
import { startStandardMesh } from './support/standard-mesh.ts';

describe('an allowed agent-to-agent call', () => {
  let mesh: Mesh;
  beforeAll(async () => {
    mesh = await startStandardMesh();
  });
  afterAll(async () => mesh.close());

  it('returns the destination app’s answer, and the app learns the caller from XFCC', async () => {
    const res = await mesh.call('planner', 'GET', 'http://researcher.agents/v1/search?q=mesh');
    expect(res.status).toBe(200);
    const body = res.json<EchoBody>();
    expect(body.agent).toBe('researcher');
    expect(body.method).toBe('GET');
    expect(body.path).toBe('/v1/search?q=mesh');
    expect(body.headers['x-forwarded-client-cert']).toBe(
      `By=${mesh.agent('researcher').identity};URI=${mesh.agent('planner').identity}`,
    );
    expect(body.headers.host).toBe('researcher.agents');
  });

  it('streams a request body to the destination', async () => {
    const res = await mesh.call('planner', 'POST', 'http://payments.agents/v1/charge', {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ amount: 42 }),
    });
    expect(res.status).toBe(200);
    expect(res.json<EchoBody>().agent).toBe('payments');
    expect(res.json<EchoBody>().headers['content-length']).toBe('13');
  });

  it('serves many calls on kept-alive connections, each with its own decision', async () => {
    const before = mesh.agent('researcher').received.length;
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => mesh.call('planner', 'GET', `http://researcher.agents/v1/item/${i}`)),
    );
    expect(results.map((r) => r.status)).toEqual(Array.from({ length: 40 }, () => 200));
    expect(mesh.agent('researcher').received.length - before).toBe(40);
    const metrics = await (await fetch(`http://127.0.0.1:${mesh.httpPort}/metrics`)).text();
    const allowed = /airlock_authz_decisions_total\{[^}]*direction="outbound"[^}]*verdict="allow"[^}]*\} (\d+)/.exec(metrics);
    expect(Number(allowed?.[1])).toBeGreaterThanOrEqual(40);
  });

  it('exposes Prometheus metrics and readiness on the sidecar admin port', async () => {
    const planner = mesh.agent('planner');
    expect((await fetch(`http://127.0.0.1:${planner.adminPort}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`http://127.0.0.1:${planner.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/airlock_sidecar_requests_total\{[^}]*direction="outbound"[^}]*\} \d+/);
    expect(metrics).toContain('airlock_sidecar_certificate_expiry_timestamp_seconds');
  });
});
