import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Mesh } from './support/mesh.ts';
import { startStandardMesh } from './support/standard-mesh.ts';

describe('a denied call', () => {
  let mesh: Mesh;
  beforeAll(async () => {
    mesh = await startStandardMesh();
  });
  afterAll(async () => mesh.close());

  it.each([
    ['researcher', 'POST', 'http://payments.agents/v1/charge', 'no policy'],
    ['planner', 'GET', 'http://payments.agents/v1/charge', 'method'],
    ['planner', 'POST', 'http://payments.agents/v1/refund', 'path'],
    ['planner', 'GET', 'http://researcher.agents/admin', 'path'],
  ])('%s %s %s gets 403 JSON naming why, and nothing reaches the app', async (from, method, url) => {
    const before = mesh.agent('payments').received.length + mesh.agent('researcher').received.length;
    const res = await mesh.call(from, method, url);
    expect(res.status).toBe(403);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const body = res.json<{ error: string; reason: string; policy: string; policyVersion: number; rule: string; decisionId: string }>();
    expect(Object.keys(body).sort()).toEqual(['decisionId', 'error', 'policy', 'policyVersion', 'reason', 'rule']);
    expect(body.error).toBe('denied');
    expect(body.reason.length).toBeGreaterThan(0);
    expect(body.decisionId).toMatch(/^[0-9a-f-]{36}$/);
    // The policy file is applied at start as version 1; nothing allowed it, so no policy or rule is named.
    expect(body).toMatchObject({ policy: '', policyVersion: 1, rule: '' });
    expect(mesh.agent('payments').received.length + mesh.agent('researcher').received.length).toBe(before);
  });

  it('writes one audit line per decision that names the decision id', async () => {
    const res = await mesh.call('researcher', 'POST', 'http://payments.agents/v1/charge');
    const { decisionId } = res.json<{ decisionId: string }>();
    // pino writes asynchronously: give the line a moment to reach the log file.
    let line: Record<string, unknown> | undefined;
    for (let i = 0; i < 50 && line === undefined; i++) {
      const log = readFileSync(join(mesh.dir, 'control-plane.log'), 'utf8');
      line = log
        .split('\n')
        .filter((l) => l.includes(decisionId))
        .map((l) => JSON.parse(l) as Record<string, unknown>)[0];
      if (line === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    expect(line?.audit).toMatchObject({
      kind: 'decision',
      decisionId,
      source: mesh.agent('researcher').identity,
      sourceSegments: ['researcher'],
      destination: mesh.agent('payments').identity,
      destinationSegments: ['payments'],
      method: 'POST',
      path: '/v1/charge',
      verdict: 'deny',
      mode: 'enforce',
      policyVersion: 1,
      policy: '',
      rule: '',
    });
  });
});
