import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';

const AGENTS = ['planner', 'researcher'] as const;

// planner → researcher GET /v1/* only for tenants a and b, and never with x-debug; tenant z denied.
const POLICY = `${policyYaml('agents', AGENTS, [])}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: tenant-calls }
spec:
  from: { segments: [planner] }
  to: { segments: [researcher] }
  rules:
    - methods: [GET]
      paths: [/v1/*]
      headers:
        - { name: X-Tenant, values: [a, b] }
        - { name: x-debug, present: false }
  action: allow
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: no-tenant-z }
spec:
  from: { segments: [planner] }
  to: { segments: [researcher] }
  rules: [ { paths: [/v1/*], headers: [ { name: x-tenant, values: [z] } ] } ]
  action: deny
`;

describe('header rules, through the mesh', () => {
  let mesh: Mesh;
  beforeAll(async () => {
    mesh = await startMesh({ agents: AGENTS, policy: POLICY });
  });
  afterAll(async () => mesh.close());

  it('lets an allowed header value through to the app', async () => {
    const res = await mesh.call('planner', 'GET', 'http://researcher.agents/v1/search', { headers: { 'x-tenant': 'b' } });
    expect(res.status).toBe(200);
    expect(mesh.agent('researcher').received.at(-1)?.path).toBe('/v1/search');
  });

  it.each([
    ['another value', { 'x-tenant': 'c' }],
    ['the header absent', {}],
    ['a header that must be absent', { 'x-tenant': 'a', 'x-debug': '1' }],
  ])('refuses %s with 403 naming the policy version and why, and nothing reaches the app', async (_why, headers: Record<string, string>) => {
    const before = mesh.agent('researcher').received.length;
    const res = await mesh.call('planner', 'GET', 'http://researcher.agents/v1/search', { headers });
    expect(res.status).toBe(403);
    const body = res.json<{ error: string; reason: string; policy: string; policyVersion: number; rule: string }>();
    expect(body).toMatchObject({ error: 'denied', policy: '', rule: '', policyVersion: 1 });
    expect(body.reason).toContain('no policy allows GET /v1/search');
    expect(mesh.agent('researcher').received.length).toBe(before);
  });

  it('refuses a denied value with 403 naming the policy and rule', async () => {
    const before = mesh.agent('researcher').received.length;
    const res = await mesh.call('planner', 'GET', 'http://researcher.agents/v1/search', { headers: { 'x-tenant': 'z' } });
    expect(res.status).toBe(403);
    expect(res.json<{ policy: string; rule: string; reason: string }>()).toMatchObject({ policy: 'no-tenant-z', rule: 'rules[0]', reason: expect.stringContaining('policy "no-tenant-z" denies') as unknown });
    expect(mesh.agent('researcher').received.length).toBe(before);
  });

  it('refuses a call whose header was left out by the bounds (fails closed), naming why', async () => {
    const padding = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`x-pad-${i}`, 'p']));
    const res = await mesh.call('planner', 'GET', 'http://researcher.agents/v1/search', { headers: { ...padding, 'x-tenant': 'a' } });
    expect(res.status).toBe(403);
    expect(res.json<{ reason: string }>().reason).toContain('header "x-tenant" was not sent to the control plane');
  });
});
