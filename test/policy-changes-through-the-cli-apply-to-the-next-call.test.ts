import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Mesh } from './support/mesh.ts';
import { startStandardMesh } from './support/standard-mesh.ts';
import { adminAndViewerCredentials, airlock } from './support/airlock-cli.ts';


const RESEARCHER_TO_PAYMENTS = `apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: researcher-to-payments }
spec:
  from: { segments: [researcher] }
  to: { segments: [payments] }
  rules: [ { methods: [POST], paths: ["/v1/charge"] } ]
  action: allow
`;

describe('policy changes through the CLI', () => {
  let mesh: Mesh;
  let admin: string;
  let viewer: string;
  beforeAll(async () => {
    mesh = await startStandardMesh();
    ({ admin, viewer } = await adminAndViewerCredentials(mesh.dir, mesh.creds));
  }, 60_000);
  afterAll(async () => mesh.close());

  it('applies a change that the very next call follows, and names version, policy and rule in decisions', async () => {
    expect((await mesh.call('researcher', 'POST', 'http://payments.agents/v1/charge')).status).toBe(403);
    const file = join(mesh.dir, 'change.yaml');
    writeFileSync(file, RESEARCHER_TO_PAYMENTS);
    const diff = await airlock(['diff', '-f', file], admin);
    expect(diff.code).toBe(3);
    expect(diff.stdout).toContain('added Policy/researcher-to-payments');
    const applied = await airlock(['apply', '-f', file, '-o', 'json'], admin);
    expect(applied.stderr).toBe('');
    expect(JSON.parse(applied.stdout)).toMatchObject({ version: 2, changed: true });
    const res = await mesh.call('researcher', 'POST', 'http://payments.agents/v1/charge');
    expect(res.status).toBe(200);

    const explain = await airlock(['explain', '--from', mesh.agent('researcher').identity, '--to', 'payments.agents', '--method', 'POST', '--path', '/v1/charge', '-o', 'json'], admin);
    expect(JSON.parse(explain.stdout)).toMatchObject({ allow: true, version: 2, policy: 'researcher-to-payments', rule: 'rules[0]', destination: mesh.agent('payments').identity });
    const refused = await airlock(['explain', '--from', mesh.agent('researcher').identity, '--to', 'payments.agents:80', '--method', 'GET', '--path', '/v1/charge'], admin);
    expect(refused.stdout).toMatch(/decision: +deny/);
    expect(refused.stdout).toMatch(/no policy allows GET \/v1\/charge/);
  });

  it('refuses anonymous (401) and a viewer applying (403), and changes nothing', async () => {
    // HTTPS, trusting the mesh's bundle as the CLI does.
    const dispatcher = new Agent({ connect: { ca: readFileSync(mesh.creds.caFile ?? '', 'utf8') } });
    const anon = await request(`${mesh.creds.server}/v1/policy`, { dispatcher });
    expect(anon.statusCode).toBe(401);
    await anon.body.dump();
    const before = await airlock(['history', '-o', 'json'], viewer);
    expect(before.code).toBe(0);
    const file = join(mesh.dir, 'viewer.yaml');
    writeFileSync(file, RESEARCHER_TO_PAYMENTS.replace('researcher-to-payments', 'sneaky'));
    const r = await airlock(['apply', '-f', file], viewer);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('(403)');
    expect(r.stderr).toContain('needs role editor');
    expect((await airlock(['history', '-o', 'json'], viewer)).stdout).toBe(before.stdout);
    const join403 = await request(`${mesh.creds.server}/v1/join-tokens`, {
      dispatcher,
      method: 'POST',
      headers: { authorization: `Bearer ${(JSON.parse((await import('node:fs')).readFileSync(viewer, 'utf8')) as { token: string }).token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ identity: 'spiffe://e2e.test/ns/agents/sa/evil' }),
    });
    expect(join403.statusCode).toBe(403);
    await join403.body.dump();
    await dispatcher.close();
  });

  it('lets a responder revoke an identity, and refuses a viewer (403)', async () => {
    const byViewer = await airlock(['agent', 'revoke', 'spiffe://e2e.test/ns/agents/sa/ghost'], viewer);
    expect(byViewer.code).toBe(1);
    expect(byViewer.stderr).toContain('needs role responder');
    const created = await airlock(['api-token', 'create', '--name', 'on-call', '--role', 'responder', '-o', 'json'], admin);
    const responder = join(mesh.dir, 'responder.json');
    writeFileSync(responder, JSON.stringify({ ...mesh.creds, token: (JSON.parse(created.stdout) as { token: string }).token }));
    const byResponder = await airlock(['agent', 'revoke', 'spiffe://e2e.test/ns/agents/sa/ghost', '-o', 'json'], responder);
    expect(byResponder.code).toBe(0);
    expect(JSON.parse(byResponder.stdout)).toMatchObject({ identity: 'spiffe://e2e.test/ns/agents/sa/ghost', alreadyRevoked: false });
    // A responder takes incident actions; it does not edit policy.
    const apply = await airlock(['apply', '-f', join(mesh.dir, 'viewer.yaml')], responder);
    expect(apply.stderr).toContain('needs role editor');
  });

  it('rejects a bad bundle with file:line:col, applying none of it', async () => {
    const file = join(mesh.dir, 'bad.yaml');
    writeFileSync(file, `${RESEARCHER_TO_PAYMENTS.replace('researcher-to-payments', 'payments-out').replace('[researcher]', '[payments]').replace('[payments] }', '[planner] }')}---\n${RESEARCHER_TO_PAYMENTS.replace('researcher-to-payments', 'oops').replace('[researcher]', '[ghosts]')}`);
    const before = await airlock(['get', 'policies', '-o', 'json'], admin);
    const offline = await airlock(['validate', '-f', file], admin);
    expect(offline.code).toBe(2);
    expect(offline.stderr).toMatch(/bad\.yaml:14:\d+: Policy "oops" spec\.from\.segments names segment "ghosts"/);
    const r = await airlock(['apply', '-f', file], admin);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bad\.yaml:14:\d+: Policy "oops"/);
    expect((await airlock(['get', 'policies', '-o', 'json'], admin)).stdout).toBe(before.stdout);
    expect((await mesh.call('payments', 'POST', 'http://planner.agents/v1/charge')).status).toBe(403);
  });

  it('rolls back to an earlier version as a new version, and the next call follows', async () => {
    const r = await airlock(['rollback', '--to', '1'], admin);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('policy version 3');
    expect((await mesh.call('researcher', 'POST', 'http://payments.agents/v1/charge')).status).toBe(403);
    const history = await airlock(['history'], viewer);
    expect(history.stdout).toMatch(/3 +\S+ +admin-token +rollback/);
    expect(history.stdout).toMatch(/1 +\S+ +policy-file +apply/);
    const body = (await mesh.call('researcher', 'POST', 'http://payments.agents/v1/charge')).json<{ reason: string }>();
    expect(body.reason).toMatch(/no policy allows POST \/v1\/charge/);
  });
});
