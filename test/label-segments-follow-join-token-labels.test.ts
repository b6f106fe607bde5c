import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminGet } from '../cli/src/admin-client.ts';
import { startMesh, type Mesh } from './support/mesh.ts';

// Two callers alike in namespace and naming; only their join tokens' labels differ.
const POLICY = `apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: research }
spec:
  selector: { labels: { team: research } }
---
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: search }
spec:
  selector: { namespace: agents, serviceAccounts: [search] }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: research-to-search }
spec:
  from: { segments: [research] }
  to: { segments: [search] }
  rules: [ { methods: [GET], paths: ["/v1/*"] } ]
  action: allow
`;

describe('a label segment, through the mesh', () => {
  let mesh: Mesh;
  beforeAll(async () => {
    mesh = await startMesh({
      agents: ['agent-1', 'agent-2', 'search'],
      policy: POLICY,
      labels: { 'agent-1': { team: 'research' }, 'agent-2': { team: 'ops' } },
    });
  });
  afterAll(async () => mesh.close());

  it('allows the agent whose join token carried the label', async () => {
    const res = await mesh.call('agent-1', 'GET', 'http://search.agents/v1/query');
    expect(res.status).toBe(200);
    expect(mesh.agent('search').received.at(-1)?.path).toBe('/v1/query');
  });

  it('stores the labels with the agent (airlock get agents)', async () => {
    const { items } = (await adminGet(mesh.creds, '/v1/agents')) as { items: { spiffeId: string; labels: Record<string, string> }[] };
    const labelsOf = (name: string) => items.find((a) => a.spiffeId === mesh.agent(name).identity)?.labels;
    expect(labelsOf('agent-1')).toEqual({ team: 'research' });
    expect(labelsOf('agent-2')).toEqual({ team: 'ops' });
    expect(labelsOf('search')).toEqual({});
  });

  it('denies the agent whose label has another value, and nothing reaches the app', async () => {
    const before = mesh.agent('search').received.length;
    const res = await mesh.call('agent-2', 'GET', 'http://search.agents/v1/query');
    expect(res.status).toBe(403);
    expect(res.json<{ policy: string; reason: string }>()).toMatchObject({ policy: '', reason: expect.stringContaining('no policy allows GET /v1/query') as unknown });
    expect(mesh.agent('search').received.length).toBe(before);
  });
});
