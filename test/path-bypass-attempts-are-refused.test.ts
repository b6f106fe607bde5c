import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';
import { rawHttp } from './support/raw-http.ts';
import { obtainSvid, type HeldSvid } from './support/svid.ts';

// planner (and direct, a workload with an SVID and no sidecar) may GET/POST researcher's /v1/*,
// except /v1/admin/* (an explicit deny, to name a rule).
const POLICY = `${policyYaml('agents', ['planner', 'researcher', 'direct'], [
  { name: 'planner-to-researcher', from: 'planner', to: 'researcher', methods: ['GET', 'POST'], paths: ['/v1/*'] },
  { name: 'direct-to-researcher', from: 'direct', to: 'researcher', methods: ['GET', 'POST'], paths: ['/v1/*'] },
])}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: no-admin }
spec:
  from: { segments: [planner, direct] }
  to: { segments: [researcher] }
  rules: [ { methods: [POST], paths: [/v1/other] }, { paths: ["/v1/admin/*"] } ]
  action: deny
`;

/** Paths that Tomcat, Jetty and Spring resolve above their `;`-parameter segments: outside /v1/ or into /v1/admin/. */
const SEMICOLON_TRICKS: [string, RegExp][] = [
  ['/v1/..;/admin', /dot-segment \("\.\."/],
  ['/v1/search/%2e%2e;/admin/users', /dot-segment \("\.\."/],
  ['/v1/search/.;x/admin/users', /dot-segment \("\."/],
  ['/v1/search/..;x=y/admin/users', /dot-segment \("\.\."/],
  ['/v1/search/%2E%2e;jsessionid=1/admin/users', /dot-segment \("\.\."/],
  ['/v1/search/.%2e;/admin/users', /dot-segment \("\.\."/],
  ['/v1/.;/admin/users', /dot-segment \("\."/],
  ['/v1/search/..%3B/admin/users', /dot-segment \("\.\."/],
  ['/v1/;/admin/users', /empty segment/],
];

interface Denied {
  error: string;
  reason: string;
  policy: string;
  policyVersion: number;
  rule: string;
  decisionId: string;
}

describe('path and authority bypass attempts through the real mesh', () => {
  let mesh: Mesh;
  const send = (requestLine: string, headers = 'Host: researcher.agents\r\n'): Promise<{ status: number; body: string }> =>
    rawHttp(mesh.agent('planner').outboundPort, `${requestLine}\r\n${headers}Connection: close\r\n\r\n`);
  const appSaw = (): string[] => mesh.agent('researcher').received.map((r) => `${r.method} ${r.path}`);

  let direct: HeldSvid;

  beforeAll(async () => {
    mesh = await startMesh({ agents: ['planner', 'researcher'], policy: POLICY });
    direct = await obtainSvid(mesh, `spiffe://${mesh.trustDomain}/ns/agents/sa/direct`);
  });
  afterAll(async () => mesh.close());

  it('a denial names the policy version, policy, rule and reason in its 403 body', async () => {
    const res = await mesh.call('planner', 'GET', 'http://researcher.agents/v1/admin/users');
    expect(res.status).toBe(403);
    const body = res.json<Denied>();
    expect(body).toMatchObject({ error: 'denied', policy: 'no-admin', policyVersion: 1, rule: 'rules[1]' });
    expect(body.reason).toMatch(/policy "no-admin" denies GET \/v1\/admin\/users/);
    expect(appSaw()).toEqual([]);
  });

  // Tomcat, Jetty and Spring read these as /v1/admin/users: the deny on /v1/admin/* matches them too.
  it.each(['/v1/admin;x/users', '/v1/admin;jsessionid=1/users', '/v1/admin%3Bx/users', '/v1;v=2/admin;x/users'])('GET %s is denied by the rule on /v1/admin/* (403), and nothing reaches the app', async (path) => {
    const res = await send(`GET http://researcher.agents${path} HTTP/1.1`);
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body) as Denied).toMatchObject({ error: 'denied', policy: 'no-admin', rule: 'rules[1]' });
    expect(appSaw()).toEqual([]);
  });

  it.each([
    ['/v1/search/../admin', /dot-segment/],
    ['/v1/search/%2e%2e/admin/users', /dot-segment/],
    ['/%2e%2e/admin', /dot-segment/],
    ['/v1/./admin/users', /dot-segment/],
    ['//admin', /empty segment/],
    ['/v1//admin/users', /empty segment/],
    ['/v1%2Fadmin', /encoded slash/],
    ['/v1/%2fadmin/users', /encoded slash/],
    ['/v1/%5Cadmin', /encoded slash or backslash/],
    ['/v1/search%00', /NUL/],
    ['/v1/%zz', /malformed percent-escape/],
    // Tomcat, Jetty and Spring drop a segment's ";" parameters, then resolve the dot-segment.
    ...SEMICOLON_TRICKS,
  ])('GET %s is refused as ambiguous (403), and nothing reaches the app', async (path, why) => {
    const res = await send(`GET http://researcher.agents${path} HTTP/1.1`);
    expect(res.status).toBe(403);
    const body = JSON.parse(res.body) as Denied;
    expect(body.error).toBe('denied');
    expect(body.reason).toMatch(/^ambiguous path: /);
    expect(body.reason).toMatch(why);
    expect(body.policyVersion).toBe(1);
    expect(appSaw()).toEqual([]);
  });

  it.each([
    ['a literal backslash', 'GET http://researcher.agents/v1\\admin HTTP/1.1'],
    ['a backslash before the authority ends', 'GET http://researcher.agents\\@payments.agents/v1/search HTTP/1.1'],
    ['a literal NUL', 'GET http://researcher.agents/v1/search\0/admin HTTP/1.1'],
    ['a lower-case method', 'get http://researcher.agents/v1/search HTTP/1.1'],
    ['a mixed-case method', 'Post http://researcher.agents/v1/search HTTP/1.1'],
    ['a fragment', 'GET http://researcher.agents/v1/search#/admin HTTP/1.1'],
  ])('%s is refused before any decision (400), and nothing reaches the app', async (_what, line) => {
    const res = await send(line);
    expect(res.status).toBe(400);
    expect(appSaw()).toEqual([]);
  });

  it('an absolute-form URL wins over Host, and a Host naming another authority is refused', async () => {
    const res = await send('GET http://researcher.agents/v1/search HTTP/1.1', 'Host: payments.agents\r\n');
    expect(res.status).toBe(400);
    expect((JSON.parse(res.body) as { reason: string }).reason).toMatch(/Host header \(payments\.agents\) names another authority than the URL \(researcher\.agents\)/);
    const port = await send('GET http://researcher.agents/v1/search HTTP/1.1', 'Host: researcher.agents:8080\r\n');
    expect(port.status).toBe(400);
    expect(appSaw()).toEqual([]);
  });

  it('what is allowed reaches the app exactly as it was judged: same path bytes, the URL authority as Host', async () => {
    const res = await send('GET http://researcher.agents/v1/%73earch?q=a/../b HTTP/1.1', 'Host: RESEARCHER.agents:80\r\n');
    expect(res.status).toBe(200);
    const seen = mesh.agent('researcher').received.at(-1);
    // %73 is "s": an unreserved character, so /v1/%73earch and /v1/search are the same resource (RFC 3986 §6.2.2.2).
    expect(seen?.path).toBe('/v1/%73earch?q=a/../b');
    expect(seen?.headers.host).toBe('researcher.agents');
  });

  // The other listener: a workload with a real SVID and no sidecar, straight to researcher's inbound port.
  const inbound = (path: string): Promise<{ status: number; body: string }> =>
    rawHttp(mesh.agent('researcher').inboundPort, `GET ${path} HTTP/1.1\r\nHost: researcher.agents\r\nConnection: close\r\n\r\n`, { tls: { ca: direct.ca, cert: direct.certChainPem, key: direct.keyPem, checkServerIdentity: () => undefined } });

  it('a peer with a real SVID gets into researcher\'s inbound port where its policy allows (the control case)', async () => {
    expect((await inbound('/v1/search;jsessionid=1')).status).toBe(200);
  });

  it('GET /v1/admin;x/users straight to researcher\'s inbound port is denied by the rule on /v1/admin/* too', async () => {
    const before = appSaw();
    const res = await inbound('/v1/admin;x/users');
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body) as Denied).toMatchObject({ policy: 'no-admin', rule: 'rules[1]' });
    expect(appSaw()).toEqual(before);
  });

  it.each(SEMICOLON_TRICKS)('GET %s straight to researcher\'s inbound port is refused as ambiguous (403) too, and nothing reaches the app', async (path, why) => {
    const before = appSaw();
    const res = await inbound(path);
    expect(res.status).toBe(403);
    expect((JSON.parse(res.body) as Denied).reason).toMatch(why);
    expect(appSaw()).toEqual(before);
  });
});
