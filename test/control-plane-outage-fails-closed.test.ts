import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Mesh } from './support/mesh.ts';
import { startStandardMesh } from './support/standard-mesh.ts';

describe('when the control plane is down', () => {
  let mesh: Mesh;
  beforeAll(async () => {
    mesh = await startStandardMesh({ authzTimeout: '250ms' });
  });
  afterAll(async () => mesh.close());

  it('refuses calls with 503 within the timeout, and recovers without restarting any sidecar', async () => {
    expect((await mesh.call('planner', 'GET', 'http://researcher.agents/v1/search')).status).toBe(200);
    const received = mesh.agent('researcher').received.length;

    await mesh.stopControlPlane();
    const started = performance.now();
    const res = await mesh.call('planner', 'GET', 'http://researcher.agents/v1/search');
    const elapsed = performance.now() - started;
    expect(res.status).toBe(503);
    expect(res.json()).toMatchObject({ error: 'authorization_unavailable' });
    // Fail closed within the authorization timeout (plus generous slack for a loaded CI machine).
    expect(elapsed).toBeLessThan(2000);
    expect(mesh.agent('researcher').received.length).toBe(received);

    const sidecarPids = [...mesh.agents.values()].map((a) => a.sidecar.child.pid);
    await mesh.startControlPlane();
    let status = 0;
    for (let i = 0; i < 100 && status !== 200; i++) {
      status = (await mesh.call('planner', 'GET', 'http://researcher.agents/v1/search')).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(200);
    expect([...mesh.agents.values()].map((a) => a.sidecar.child.pid)).toEqual(sidecarPids);
    expect([...mesh.agents.values()].every((a) => a.sidecar.child.exitCode === null)).toBe(true);
  });

  it('refuses calls with 503 while the control plane is frozen (SIGSTOP), lets none through, and recovers on SIGCONT', { timeout: 60_000 }, async () => {
    await expect.poll(async () => (await mesh.call('planner', 'GET', 'http://researcher.agents/v1/search')).status, { timeout: 10_000 }).toBe(200);
    const cp = mesh.controlPlaneProcess();
    expect(cp?.child.pid).toBeDefined();
    const received = mesh.agent('researcher').received.length;
    cp?.child.kill('SIGSTOP');
    try {
      // The connection stays open and silent: only the per-call deadline ends each wait.
      const statuses = await Promise.all(Array.from({ length: 8 }, () => mesh.call('planner', 'GET', 'http://researcher.agents/v1/search').then((r) => [r.status, r.json<{ error: string }>().error] as const)));
      expect(statuses).toEqual(Array.from({ length: 8 }, () => [503, 'authorization_unavailable']));
      expect(mesh.agent('researcher').received.length).toBe(received);
    } finally {
      cp?.child.kill('SIGCONT');
    }
    await expect.poll(async () => (await mesh.call('planner', 'GET', 'http://researcher.agents/v1/search')).status, { timeout: 10_000 }).toBe(200);
    expect(cp?.child.exitCode).toBeNull();
  });
});
