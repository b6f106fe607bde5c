// Issue 14 item 6: a RateLimit document enforced by the control plane at decision time, through real
// sidecars: the (N+1)th call answers 429 with Retry-After and {"error":"rate_limited"} (a JSON-RPC
// error for an MCP request; inside a CONNECT tunnel too), other identities are unaffected, the denial is
// audited (schema-valid) and counted, and the caller gets through again once its bucket refills.
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { auditEventsOf, auditSchemaProblems } from '../control-plane/src/testing/audit-events.ts';
import { startLoopbackDns } from './support/loopback-dns.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';
import { rawHttp } from './support/raw-http.ts';
import { airlock } from './support/airlock-cli.ts';

const AGENTS = ['planner', 'researcher', 'payments'] as const;

const rateLimit = (interval: string): string => `apiVersion: airlock.dev/v1
kind: RateLimit
metadata: { name: planner-calls }
spec:
  from: { segments: [planner] }
  per: source
  requests: 3
  interval: ${interval}
`;

// planner may make 3 calls (to anyone) per hour: no refill can happen while the test runs.
const POLICY = `${policyYaml('agents', AGENTS, [
  { name: 'planner-to-researcher', from: 'planner', to: 'researcher', methods: ['GET', 'POST'], paths: ['/v1/*', '/mcp'] },
  { name: 'planner-to-payments', from: 'planner', to: 'payments', methods: ['POST'], paths: ['/v1/charge'] },
  { name: 'researcher-to-payments', from: 'researcher', to: 'payments', methods: ['POST'], paths: ['/v1/charge'] },
])}---
${rateLimit('1h')}`;


/** The `airlock` CLI, as an operator runs it. */
interface Limited {
  error: string;
  reason: string;
  retryAfterMs: number;
  decisionId: string;
}

describe('RateLimit through the mesh', () => {
  let mesh: Mesh;
  beforeAll(async () => {
    mesh = await startMesh({ agents: AGENTS, policy: POLICY });
  });
  afterAll(async () => mesh.close());

  it('answers the 4th call of the window 429 with Retry-After; nothing reaches the app; the other listener forms and the MCP path say so too', async () => {
    const researcher = mesh.agent('researcher');
    for (let i = 0; i < 3; i++) expect((await mesh.call('planner', 'GET', `http://researcher.agents/v1/search?n=${i}`)).status).toBe(200);
    const before = researcher.received.length;

    const res = await mesh.call('planner', 'GET', 'http://researcher.agents/v1/search?n=3');
    expect(res.status).toBe(429);
    expect(res.headers['retry-after']).toMatch(/^[1-9][0-9]*$/);
    const body = res.json<Limited>();
    expect(body).toMatchObject({ error: 'rate_limited', decisionId: expect.stringMatching(/^[0-9a-f-]{36}$/) as unknown });
    expect(body.reason).toContain('RateLimit "planner-calls" allows 3 requests');
    expect(body.retryAfterMs).toBeGreaterThan(0);
    expect(Number(res.headers['retry-after'])).toBe(Math.ceil(body.retryAfterMs / 1000));

    // Per source: every destination of the planner shares the bucket.
    expect((await mesh.call('planner', 'POST', 'http://payments.agents/v1/charge', { body: '{}' })).status).toBe(429);
    // An MCP request gets a JSON-RPC error for its id, with its own code.
    const mcp = await mesh.call('planner', 'POST', 'http://researcher.agents/mcp', {
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search"}}',
    });
    expect(mcp.status).toBe(200);
    expect(mcp.headers['retry-after']).toMatch(/^[1-9][0-9]*$/);
    expect(mcp.json()).toMatchObject({ jsonrpc: '2.0', id: 7, error: { code: -32051, data: { error: 'rate_limited' } } });
    // A request inside a CONNECT tunnel (how Node's ProxyAgent reaches a mesh peer) is answered the same way.
    const raw = await rawHttp(mesh.agent('planner').outboundPort, 'CONNECT researcher.agents:80 HTTP/1.1\r\nHost: researcher.agents:80\r\n\r\nGET /v1/x HTTP/1.1\r\nHost: researcher.agents\r\nConnection: close\r\n\r\n');
    const answers = `${raw.head}\r\n\r\n${raw.body}`.split(/(?=HTTP\/1\.1 \d{3} )/);
    expect(answers[0]).toMatch(/^HTTP\/1\.1 200 /);
    expect(answers[1]).toMatch(/^HTTP\/1\.1 429 /);
    expect(answers[1]).toMatch(/\r\nretry-after: [1-9][0-9]*\r\n/i);
    expect(answers[1]).toContain('"error":"rate_limited"');
    expect(researcher.received.length).toBe(before);
  });

  it('leaves other identities alone', async () => {
    for (let i = 0; i < 5; i++) expect((await mesh.call('researcher', 'POST', 'http://payments.agents/v1/charge', { body: '{}' })).status).toBe(200);
  });

  it('audits each limited call (schema-valid, reason rate limited) and counts it in both processes', async () => {
    const read = (): Record<string, unknown>[] => auditEventsOf(readFileSync(join(mesh.dir, 'control-plane.log'), 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>));
    const limitedOf = (events: Record<string, unknown>[]): Record<string, unknown>[] => events.filter((e) => e.kind === 'decision' && e.rateLimit !== undefined);
    // pino writes asynchronously: give the lines a moment to reach the file (bounded).
    let events = read();
    for (let i = 0; i < 50 && limitedOf(events).length < 4; i++) {
      await sleep(100);
      events = read();
    }
    for (const e of events) expect(auditSchemaProblems(e)).toEqual([]);
    const limited = limitedOf(events);
    expect(limited.length).toBe(4);
    for (const e of limited) {
      expect(e).toMatchObject({ verdict: 'deny', mode: 'enforce', direction: 'outbound', source: mesh.agent('planner').identity, rateLimit: { name: 'planner-calls', per: 'source', mode: 'enforce' } });
      expect(e.reason).toMatch(/^rate limited: /);
    }
    const cp = await (await fetch(`http://127.0.0.1:${mesh.httpPort}/metrics`)).text();
    expect(cp).toMatch(/^airlock_authz_rate_limited_total\{[^}]*rate_limit="planner-calls"[^}]*mode="enforce"[^}]*\} 4$/m);
    const sidecar = await (await fetch(`http://127.0.0.1:${mesh.agent('planner').adminPort}/metrics`)).text();
    expect(sidecar).toMatch(/^airlock_sidecar_requests_total\{[^}]*direction="outbound"[^}]*outcome="rate_limited"[^}]*\} 4$/m);
  });

  it('lets the caller through again once its bucket refills (the interval made short by a new version, through the CLI)', async () => {
    expect((await mesh.call('planner', 'GET', 'http://researcher.agents/v1/search?still')).status).toBe(429);
    const admin = join(mesh.dir, 'admin.json');
    writeFileSync(admin, JSON.stringify(mesh.creds));
    const file = join(mesh.dir, 'faster.yaml');
    writeFileSync(file, rateLimit('200ms'));
    // Offline, with the segment it names.
    writeFileSync(join(mesh.dir, 'whole.yaml'), `${policyYaml('agents', ['planner'], [])}---\n${rateLimit('200ms')}`);
    expect((await airlock(['validate', '-f', join(mesh.dir, 'whole.yaml')], admin)).stdout).toBe('valid: 1 segment(s), 0 policies, 1 rate limit(s)\n');
    writeFileSync(join(mesh.dir, 'bad.yaml'), rateLimit('soon'));
    const bad = await airlock(['apply', '-f', join(mesh.dir, 'bad.yaml')], admin);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/bad\.yaml:8:13: .spec\.interval. must be a duration like 500ms/);
    expect((await airlock(['apply', '-f', file], admin)).code).toBe(0);
    const listed = JSON.parse((await airlock(['get', 'ratelimits', '-o', 'json'], admin)).stdout) as { items: { name: string; yaml: string }[] };
    expect(listed.items.map((i) => i.name)).toEqual(['planner-calls']);
    expect(listed.items[0]?.yaml).toContain('interval: 200ms');
    let status = 0;
    // Bounded: at 3 requests per 200 ms a token is back within 67 ms; 100 tries of 50 ms is 5 s.
    for (let i = 0; i < 100 && status !== 200; i++) {
      status = (await mesh.call('planner', 'GET', 'http://researcher.agents/v1/search?again')).status;
      if (status !== 200) {
        expect(status).toBe(429);
        await sleep(50);
      }
    }
    expect(status).toBe(200);
  });
});

// External hosts: names a DNS server of the test's resolves to 127.0.0.1 for the sidecar (nothing leaves loopback).
describe('RateLimit on external hosts', () => {
  let mesh: Mesh;
  let host: Server;
  let dns: { port: number; close(): void };
  let port: number;
  let hits = 0;
  beforeAll(async () => {
    host = createServer((_req, res) => {
      hits++;
      res.end('ok');
    });
    await listen(host, { host: '127.0.0.1', port: 0 });
    port = boundPort(host);
    dns = await startLoopbackDns(new Map([['api.example.test', '127.0.0.1'], ['other.example.test', '127.0.0.1']]));
    const policy = `${policyYaml('agents', ['planner'], [])}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: apis }
spec: { from: { segments: [planner] }, to: { hosts: [api.example.test, other.example.test], ports: [${port}] }, action: allow }
---
apiVersion: airlock.dev/v1
kind: RateLimit
metadata: { name: api-quota }
spec: { from: { segments: [planner] }, to: { hosts: [api.example.test] }, per: source-destination, requests: 2, interval: 1h }
`;
    mesh = await startMesh({ agents: ['planner'], policy, sidecarArgs: ['--egress-dns-servers', `127.0.0.1:${dns.port}`, '--egress-allow-cidrs', '127.0.0.0/8'] });
  });
  afterAll(async () => {
    await mesh.close();
    dns.close();
    await closeServer(host);
  });

  it('limits the host it names (any spelling, plain HTTP or a blind CONNECT), not the others', async () => {
    const url = (h: string): string => `http://${h}:${port}/v1/x`;
    for (let i = 0; i < 2; i++) expect((await mesh.call('planner', 'GET', url('api.example.test'))).status).toBe(200);
    const before = hits;
    const limited = await mesh.call('planner', 'GET', url('API.Example.Test.'));
    expect(limited.status).toBe(429);
    expect(limited.headers['retry-after']).toMatch(/^[1-9][0-9]*$/);
    expect(limited.json()).toMatchObject({ error: 'rate_limited' });
    // A blind tunnel is refused on its raw socket, with the same answer.
    const tunnel = await rawHttp(mesh.agent('planner').outboundPort, `CONNECT api.example.test:${port} HTTP/1.1\r\nHost: api.example.test:${port}\r\n\r\n`);
    expect(tunnel.status).toBe(429);
    expect(tunnel.head).toMatch(/\r\nretry-after: [1-9][0-9]*\r\n/i);
    expect(JSON.parse(tunnel.body)).toMatchObject({ error: 'rate_limited' });
    expect(hits).toBe(before);
    for (let i = 0; i < 4; i++) expect((await mesh.call('planner', 'GET', url('other.example.test'))).status).toBe(200);
  });
});
