import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { adminPost } from '../cli/src/admin-client.ts';
import { createTestCa } from '../sidecar/src/testing/certs.ts';
import { startLoopbackDns } from './support/loopback-dns.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';
import { rawHttp } from './support/raw-http.ts';

const run = promisify(execFile);

/**
 * HTTPS egress that L7 rules see (tls: inspect): real clients (curl, Node 24's fetch, Python
 * requests) call https:// through HTTPS_PROXY, trusting the sidecar's egress CA through their
 * environment; the sidecar terminates their TLS inside the CONNECT, judges each request, and
 * speaks TLS, verified, to the real server. Every host name resolves (for the sidecar, through a
 * DNS server of the test's) to 127.0.0.1: nothing leaves loopback.
 */

interface Seen {
  readonly server: string;
  readonly method: string;
  readonly path: string;
  readonly host: string;
  readonly body: string;
}

/** An HTTPS echo server with `cert`: answers JSON naming what it received. */
async function startHttpsEcho(name: string, tlsCert: { keyPem: string; certPem: string }, seen: Seen[]): Promise<Server> {
  const server = createServer({ key: tlsCert.keyPem, cert: tlsCert.certPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s = { server: name, method: req.method ?? '', path: req.url ?? '', host: req.headers.host ?? '', body: Buffer.concat(chunks).toString('utf8') };
      seen.push(s);
      const text = JSON.stringify(s);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
  });
  await listen(server, { host: '127.0.0.1', port: 0 });
  return server;
}

interface Answer {
  readonly status?: number;
  readonly body?: string;
  /** Why the client failed, as it says it. */
  readonly error?: string;
}

describe('HTTPS egress with tls: inspect and tls: originate', () => {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-inspect-'));
  const egressCaFile = join(dir, 'egress-ca.pem');
  const upstreamCaFile = join(dir, 'upstream-ca.pem');
  const seen: Seen[] = [];
  let mesh: Mesh;
  let api: Server;
  let untrusted: Server;
  let dns: { port: number; close(): void };
  let apiPort: number;
  let untrustedPort: number;
  let proxy: string;

  beforeAll(async () => {
    const upstreamCa = createTestCa('Upstream Test CA');
    writeFileSync(upstreamCaFile, upstreamCa.certPem);
    api = await startHttpsEcho('api', upstreamCa.issue({ dnsNames: ['api.example.test', 'docs.example.test', 'search.example.test', 'own.example.test'] }), seen);
    // Its certificate comes from a CA the sidecar does not trust.
    untrusted = await startHttpsEcho('untrusted', createTestCa('Someone Else').issue({ dnsNames: ['untrusted.example.test'] }), seen);
    apiPort = boundPort(api);
    untrustedPort = boundPort(untrusted);
    const names = ['api', 'docs', 'search', 'untrusted', 'own'].map((n): [string, string] => [`${n}.example.test`, '127.0.0.1']);
    dns = await startLoopbackDns(new Map(names));
    const policy = `${policyYaml('agents', ['planner'], [])}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: llm-api }
spec:
  from: { segments: [planner] }
  to: { hosts: [api.example.test], ports: [${apiPort}], tls: inspect }
  rules:
    - { methods: [GET], paths: [/v1/*] }
    - { methods: [POST], paths: [/v1/chat] }
  action: allow
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: untrusted-api }
spec:
  from: { segments: [planner] }
  to: { hosts: [untrusted.example.test], ports: [${untrustedPort}], tls: inspect }
  action: allow
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: search-tunnel }
spec:
  from: { segments: [planner] }
  to: { hosts: [search.example.test], ports: [${apiPort}] }
  rules: [ { methods: [GET], paths: [/q] } ]
  action: allow
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: docs-originate }
spec:
  from: { segments: [planner] }
  to: { hosts: [docs.example.test], ports: [${apiPort}], tls: originate }
  rules: [ { methods: [GET], paths: [/v1/*] } ]
  action: allow
`;
    mesh = await startMesh({
      agents: ['planner'],
      policy,
      // A loaded CI machine must not turn the first (cold) decision into a 503: this test is not about deadlines.
      authzTimeout: '5s',
      sidecarArgs: ['--egress-dns-servers', `127.0.0.1:${dns.port}`, '--egress-allow-cidrs', '127.0.0.0/8', '--egress-ca-file', egressCaFile, '--egress-trust-bundle-file', upstreamCaFile],
    });
    proxy = `http://127.0.0.1:${mesh.agent('planner').outboundPort}`;
  });
  afterAll(async () => {
    await mesh.close();
    await closeServer(api);
    await closeServer(untrusted);
    dns.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** curl through HTTPS_PROXY (HTTP_PROXY for http://), trusting the egress CA through the environment when `trust`. */
  async function curl(url: string, o: { trust?: boolean; method?: string; body?: string } = {}): Promise<Answer> {
    // curl reads http_proxy in lower case only.
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HTTPS_PROXY: proxy, http_proxy: proxy, ...(o.trust === false ? {} : { CURL_CA_BUNDLE: egressCaFile }) };
    const args = ['-sS', '--max-time', '20', '-w', '\n%{http_code}', ...(o.method === undefined ? [] : ['-X', o.method]), ...(o.body === undefined ? [] : ['-H', 'content-type: application/json', '--data-binary', o.body]), url];
    try {
      const { stdout } = await run('curl', args, { env, timeout: 30_000 });
      const cut = stdout.lastIndexOf('\n');
      return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) };
    } catch (err) {
      return { error: (err as { stderr?: string }).stderr ?? String(err) };
    }
  }

  /** Node 24's own fetch (NODE_USE_ENV_PROXY=1 + HTTPS_PROXY), trusting the egress CA through NODE_EXTRA_CA_CERTS when `trust`. */
  async function nodeFetch(requests: readonly [string, string, string?][], trust = true): Promise<Answer[]> {
    const script = `const out = []; for (const [method, url, body] of JSON.parse(process.argv[1])) { try { const r = await fetch(url, { method, body, headers: body === undefined ? {} : { 'content-type': 'application/json' } }); out.push({ status: r.status, body: await r.text() }); } catch (e) { out.push({ error: String(e.cause?.code ?? e.cause?.message ?? e.message) }); } } console.log(JSON.stringify(out));`;
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, NODE_USE_ENV_PROXY: '1', HTTPS_PROXY: proxy, HTTP_PROXY: proxy, ...(trust ? { NODE_EXTRA_CA_CERTS: egressCaFile } : {}) };
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(requests)], { env, timeout: 60_000 });
    return JSON.parse(stdout) as Answer[];
  }

  /** Python's requests through HTTPS_PROXY, trusting the egress CA through REQUESTS_CA_BUNDLE when `trust`. */
  async function pythonRequests(requests: readonly [string, string, string?][], trust = true): Promise<Answer[]> {
    const script = [
      'import json, sys, requests',
      'out = []',
      'for method, url, *body in json.loads(sys.argv[1]):',
      '    try:',
      "        r = requests.request(method, url, data=(body[0] if body else None), headers=({'content-type': 'application/json'} if body else {}), timeout=20)",
      "        out.append({'status': r.status_code, 'body': r.text})",
      '    except Exception as e:',
      "        out.append({'error': type(e).__name__ + ': ' + str(e)})",
      'print(json.dumps(out))',
    ].join('\n');
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, HTTPS_PROXY: proxy, HTTP_PROXY: proxy, ...(trust ? { REQUESTS_CA_BUNDLE: egressCaFile } : {}) };
    const { stdout } = await run('python3', ['-c', script, JSON.stringify(requests)], { env, timeout: 60_000 });
    return JSON.parse(stdout) as Answer[];
  }

  const url = (path: string, host = 'api'): string => `https://${host}.example.test:${apiPort}${path}`;
  const denied = (reason: RegExp): unknown => expect.objectContaining({ error: 'denied', reason: expect.stringMatching(reason) as unknown }) as unknown;

  it('writes its egress CA certificate where the agent loads it', () => {
    expect(readFileSync(egressCaFile, 'utf8')).toMatch(/^-----BEGIN CERTIFICATE-----/);
  });

  it('curl: an allowed path reaches the server over verified TLS; a forbidden one is a 403 JSON inside TLS', async () => {
    const before = seen.length;
    const ok = await curl(url('/v1/models?page=2'));
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body ?? '')).toEqual({ server: 'api', method: 'GET', path: '/v1/models?page=2', host: `api.example.test:${apiPort}`, body: '' });
    const no = await curl(url('/admin/keys'));
    expect(no.status).toBe(403);
    expect(JSON.parse(no.body ?? '')).toEqual(denied(/no policy allows GET \/admin\/keys from .* to api\.example\.test:\d+/));
    const post = await curl(url('/v1/chat'), { method: 'POST', body: '{"q":"hi"}' });
    expect(post.status).toBe(200);
    expect(JSON.parse(post.body ?? '')).toMatchObject({ method: 'POST', path: '/v1/chat', body: '{"q":"hi"}' });
    expect(seen.slice(before).map((s) => `${s.method} ${s.path}`)).toEqual(['GET /v1/models?page=2', 'POST /v1/chat']);
  });

  it('Node 24 fetch (NODE_USE_ENV_PROXY, NODE_EXTRA_CA_CERTS): allowed, and the 403 JSON of a forbidden path', async () => {
    const [ok, no, post] = await nodeFetch([['GET', url('/v1/models')], ['DELETE', url('/v1/models/x')], ['POST', url('/v1/chat'), '{"n":1}']]);
    expect(ok?.status).toBe(200);
    expect(JSON.parse(ok?.body ?? '')).toMatchObject({ server: 'api', path: '/v1/models' });
    expect(no?.status).toBe(403);
    expect(JSON.parse(no?.body ?? '')).toEqual(denied(/no policy allows DELETE \/v1\/models\/x/));
    expect(post?.status).toBe(200);
    expect(JSON.parse(post?.body ?? '')).toMatchObject({ method: 'POST', body: '{"n":1}' });
  });

  it('Python requests (HTTPS_PROXY, REQUESTS_CA_BUNDLE): allowed, and the 403 JSON of a forbidden path', async () => {
    const [ok, no] = await pythonRequests([['GET', url('/v1/models')], ['GET', url('/v2/other')]]);
    expect(ok?.status).toBe(200);
    expect(JSON.parse(ok?.body ?? '')).toMatchObject({ server: 'api', path: '/v1/models' });
    expect(no?.status).toBe(403);
    expect(JSON.parse(no?.body ?? '')).toEqual(denied(/no policy allows GET \/v2\/other/));
  });

  it('path tricks inside TLS are judged as on any other request: dot-segments, encoded ones and ;-parameters are refused before the server sees them', async () => {
    const before = seen.length;
    const args = (path: string): string[] => ['-sS', '--path-as-is', '--max-time', '20', '-w', '\n%{http_code}', url(path)];
    for (const path of ['/v1/../admin/keys', '/v1/%2e%2e/admin/keys', '/v1/..;/admin/keys', '/v1/%2Fadmin', '/v1//x']) {
      const { stdout } = await run('curl', args(path), { env: { PATH: process.env.PATH, HTTPS_PROXY: proxy, CURL_CA_BUNDLE: egressCaFile }, timeout: 30_000 });
      const cut = stdout.lastIndexOf('\n');
      expect(Number(stdout.slice(cut + 1)), path).toBe(403);
      expect(JSON.parse(stdout.slice(0, cut)), path).toMatchObject({ error: 'denied' });
    }
    expect(seen.length).toBe(before);
  });

  it('OpenSSL (s_client through the proxy, SSL_CERT_FILE) verifies the leaf against the egress CA', async () => {
    const sClient = async (trust: boolean): Promise<string> => {
      const args = ['s_client', '-proxy', `127.0.0.1:${mesh.agent('planner').outboundPort}`, '-connect', `api.example.test:${apiPort}`, '-servername', 'api.example.test', '-verify_return_error', '-verify_hostname', 'api.example.test', '-quiet'];
      const child = execFile('openssl', args, { env: { PATH: process.env.PATH, ...(trust ? { SSL_CERT_FILE: egressCaFile } : { SSL_CERT_FILE: upstreamCaFile }) }, timeout: 30_000 });
      child.stdin?.end(`GET /v1/openssl HTTP/1.1\r\nHost: api.example.test:${apiPort}\r\nConnection: close\r\n\r\n`);
      let out = '';
      child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
      await new Promise((resolve) => child.on('close', resolve));
      return out;
    };
    expect(await sClient(true)).toMatch(/HTTP\/1\.1 200[\s\S]*"path":"\/v1\/openssl"/);
    expect(await sClient(false)).toMatch(/verify error:num=20:unable to get local issuer certificate/);
  });

  it('a client that does not trust the egress CA fails with a clear TLS error, not a hang, and sends nothing', async () => {
    const before = seen.length;
    expect((await curl(url('/v1/models'), { trust: false })).error).toMatch(/SSL certificate problem: unable to get local issuer certificate/);
    const [node] = await nodeFetch([['GET', url('/v1/models')]], false);
    expect(node?.error).toMatch(/^UNABLE_TO_(VERIFY_LEAF_SIGNATURE|GET_ISSUER_CERT_LOCALLY)$/);
    const [python] = await pythonRequests([['GET', url('/v1/models')]], false);
    expect(python?.error).toMatch(/SSLError.*CERTIFICATE_VERIFY_FAILED/);
    expect(seen.length).toBe(before);
  });

  it('an upstream certificate the sidecar does not trust is a 502 JSON saying so, and nothing is sent to it', async () => {
    const before = seen.length;
    const r = await curl(`https://untrusted.example.test:${untrustedPort}/anything`);
    expect(r.status).toBe(502);
    expect(JSON.parse(r.body ?? '')).toEqual({ error: 'upstream_unavailable', reason: expect.stringMatching(/untrusted\.example\.test:\d+ presented a certificate that does not verify for untrusted\.example\.test against egressTrustBundleFile .*nothing was sent/) as unknown });
    expect(seen.length).toBe(before);
  });

  it('the TLS server name must be the CONNECT host: another name, or none, gets no certificate', async () => {
    const ca = readFileSync(egressCaFile, 'utf8');
    const handshake = (servername: string | undefined): Promise<string> =>
      new Promise((resolve) => {
        const socket = netConnect(mesh.agent('planner').outboundPort, '127.0.0.1', () => socket.write(`CONNECT api.example.test:${apiPort} HTTP/1.1\r\nHost: api.example.test:${apiPort}\r\n\r\n`));
        socket.once('data', (answer: Buffer) => {
          expect(answer.toString('latin1')).toMatch(/^HTTP\/1\.1 200/);
          const tls = tlsConnect({ socket, ca, ...(servername === undefined ? {} : { servername }), checkServerIdentity: () => undefined });
          tls.on('secureConnect', () => {
            tls.destroy();
            resolve('handshake done');
          });
          tls.on('error', (err: Error) => resolve(err.message));
        });
      });
    expect(await handshake('evil.example.test')).toMatch(/disconnected before secure TLS connection was established|alert/);
    expect(await handshake(undefined)).toMatch(/disconnected before secure TLS connection was established|alert/);
    expect(await handshake('API.example.test')).toBe('handshake done');
  });

  it('without tls: inspect a CONNECT stays a tunnel on host and port, and a deny for rules it cannot see says so', async () => {
    const r = await rawHttp(mesh.agent('planner').outboundPort, `CONNECT search.example.test:${apiPort} HTTP/1.1\r\nHost: search.example.test:${apiPort}\r\n\r\n`);
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toEqual(denied(/policy "search-tunnel" allows this host only for the requests its rules name, and a CONNECT to an external host is a blind tunnel.*tls: inspect/));
  });

  it('tls: originate: the agent sends http://, the sidecar calls https:// (verified); rules apply', async () => {
    const ok = await curl(`http://docs.example.test:${apiPort}/v1/guide`);
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body ?? '')).toMatchObject({ server: 'api', path: '/v1/guide', host: `docs.example.test:${apiPort}` });
    const no = await curl(`http://docs.example.test:${apiPort}/private`);
    expect(no.status).toBe(403);
    // Node's fetch sends http:// as CONNECT docs.example.test:<port>: served as HTTP, then TLS upstream.
    const [viaConnect] = await nodeFetch([['GET', `http://docs.example.test:${apiPort}/v1/node`]]);
    expect(viaConnect?.status).toBe(200);
    expect(JSON.parse(viaConnect?.body ?? '')).toMatchObject({ server: 'api', path: '/v1/node' });
  });

  it('the destination check still guards the dial of an inspected call (the sidecar\'s own port)', async () => {
    const adminPort = mesh.agent('planner').adminPort;
    const own = `---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: own-port }
spec:
  from: { segments: [planner] }
  to: { hosts: [own.example.test], ports: [${adminPort}], tls: inspect }
  action: allow
`;
    expect(await adminPost(mesh.creds, '/v1/policy/apply', { yaml: own })).toMatchObject({ changed: true });
    const r = await curl(`https://own.example.test:${adminPort}/metrics`);
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body ?? '')).toMatchObject({ error: 'forbidden_destination', rule: 'sidecar-port', address: '127.0.0.1' });
  });

  it('counts inspected connections and minted certificates', async () => {
    const metrics = await (await fetch(`http://127.0.0.1:${mesh.agent('planner').adminPort}/metrics`)).text();
    const value = (line: RegExp): number => Number(line.exec(metrics)?.[1] ?? 0);
    expect(value(/^airlock_sidecar_egress_inspected_connections_total\{result="inspected"[^}]*\} (\d+)/m)).toBeGreaterThan(3);
    expect(value(/^airlock_sidecar_egress_inspected_connections_total\{result="sni_mismatch"[^}]*\} (\d+)/m)).toBe(1);
    expect(value(/^airlock_sidecar_egress_inspected_connections_total\{result="handshake_failed"[^}]*\} (\d+)/m)).toBeGreaterThanOrEqual(4); // curl, Node, Python (a client may retry), no SNI
    // One leaf per name (cached): api, untrusted, own.
    expect(value(/^airlock_sidecar_egress_certificates_minted_total\{[^}]*\} (\d+)/m)).toBe(3);
  });
});
