import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { auditEventsOf, auditSchemaProblems } from '../control-plane/src/testing/audit-events.ts';
import { createTestCa } from '../sidecar/src/testing/certs.ts';
import { startLoopbackDns } from './support/loopback-dns.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';

const run = promisify(execFile);

/**
 * Egress secret blocking end to end: a real sidecar scans each outbound request (headers, path, a
 * bounded body prefix; inside TLS under tls: inspect) and the control plane denies what the
 * allowing policy's `secrets:` blocks, naming detector and field. The upstream (loopback servers
 * standing for external hosts) never receives a blocked request, and no log line nor audit event
 * of either process holds the secret. Host names resolve, for the sidecar, to 127.0.0.1.
 */

// Assembled so that no whole token sits in the source (secret scanners).
const AWS_KEY = ['AKIA', 'Z7Q3XW2PLM4K9TRB'].join('');
const PRIVATE_KEY_BODY = ['-----BEGIN RSA ', 'PRIVATE KEY-----\nMIIEowIBAAKCAQEAzT3sEcReTmAtErIaL\n-----END RSA ', 'PRIVATE KEY-----\n'].join('');
const SECRET_MARKERS = [AWS_KEY, 'MIIEowIBAAKCAQEAzT3sEcReTmAtErIaL'];

interface Seen {
  readonly server: string;
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

function echo(name: string, seen: Seen[]) {
  return (req: IncomingMessage, res: import('node:http').ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ server: name, method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      const text = JSON.stringify({ server: name, path: req.url });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
  };
}

describe('secrets and PII never leave through egress a policy guards', () => {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-dlp-'));
  const egressCaFile = join(dir, 'egress-ca.pem');
  const upstreamCaFile = join(dir, 'upstream-ca.pem');
  const seen: Seen[] = [];
  let mesh: Mesh;
  let plain: Server;
  let tls: Server;
  let dns: { port: number; close(): void };
  let plainPort: number;
  let tlsPort: number;
  let proxy: string;

  beforeAll(async () => {
    plain = createHttpServer(echo('plain', seen));
    await listen(plain, { host: '127.0.0.1', port: 0 });
    const upstreamCa = createTestCa('Upstream Test CA');
    writeFileSync(upstreamCaFile, upstreamCa.certPem);
    const cert = upstreamCa.issue({ dnsNames: ['api.example.test', 'blind.example.test'] });
    tls = createHttpsServer({ key: cert.keyPem, cert: cert.certPem }, echo('tls', seen));
    await listen(tls, { host: '127.0.0.1', port: 0 });
    plainPort = boundPort(plain);
    tlsPort = boundPort(tls);
    dns = await startLoopbackDns(new Map(['upload', 'open', 'api', 'blind'].map((n): [string, string] => [`${n}.example.test`, '127.0.0.1'])));
    const allow = (name: string, to: string): string => `---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: ${name} }
spec:
  from: { segments: [planner] }
  to: ${to}
  action: allow
`;
    const policy =
      policyYaml('agents', ['planner'], []) +
      allow('upload', `{ hosts: [upload.example.test], ports: [${plainPort}], secrets: { block: [aws-access-key, private-key], pii: [credit-card] } }`) +
      allow('open', `{ hosts: [open.example.test], ports: [${plainPort}] }`) +
      allow('llm-api', `{ hosts: [api.example.test], ports: [${tlsPort}], tls: inspect, secrets: { block: all } }`) +
      allow('blind', `{ hosts: [blind.example.test], ports: [${tlsPort}], secrets: { block: all } }`);
    mesh = await startMesh({
      agents: ['planner'],
      policy,
      authzTimeout: '5s',
      // debug: the most the sidecar ever logs, so that the "never in a log" check reads all of it.
      sidecarArgs: ['--log-level', 'debug', '--egress-dns-servers', `127.0.0.1:${dns.port}`, '--egress-allow-cidrs', '127.0.0.0/8', '--egress-ca-file', egressCaFile, '--egress-trust-bundle-file', upstreamCaFile],
    });
    proxy = `http://127.0.0.1:${mesh.agent('planner').outboundPort}`;
  });
  afterAll(async () => {
    await mesh.close();
    await closeServer(plain);
    await closeServer(tls);
    dns.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const upload = (path: string): string => `http://upload.example.test:${plainPort}${path}`;
  const deniedFor = (detector: string, field: string): unknown =>
    expect.objectContaining({ error: 'denied', reason: expect.stringContaining(`secret_detected: ${detector} in ${field}`) as unknown }) as unknown;
  const received = (path: string): Seen[] => seen.filter((s) => s.path.startsWith(path));

  it('an AWS access key in a header: 403 JSON naming detector and header; the host never sees it', async () => {
    const r = await mesh.call('planner', 'POST', upload('/v1/aws-header'), { headers: { 'x-api-key': AWS_KEY, 'content-type': 'application/json' }, body: '{"q":1}' });
    expect(r.status).toBe(403);
    expect(r.json()).toEqual(deniedFor('aws-access-key@1', 'header:x-api-key'));
    expect(r.text).not.toContain(AWS_KEY);
    expect(received('/v1/aws-header')).toEqual([]);
  });

  it('the same key in Authorization, in the query, inside a JSON (MCP-read) body: each denied, naming its field', async () => {
    const inAuth = await mesh.call('planner', 'GET', upload('/v1/aws-auth'), { headers: { authorization: `AWS4-HMAC-SHA256 Credential=${AWS_KEY}/20261204/us-east-1/s3/aws4_request` } });
    expect(inAuth.json()).toEqual(deniedFor('aws-access-key@1', 'header:authorization'));
    const inQuery = await mesh.call('planner', 'GET', upload(`/v1/aws-query?key=${AWS_KEY}`));
    expect(inQuery.json()).toEqual(deniedFor('aws-access-key@1', 'path'));
    const inJson = await mesh.call('planner', 'POST', upload('/v1/aws-json'), { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'save', arguments: { note: `key ${AWS_KEY}` } } }) });
    expect(inJson.status).toBe(403);
    expect(inJson.text).toContain('secret_detected: aws-access-key@1 in body');
    expect(seen.filter((s) => s.path.startsWith('/v1/aws-'))).toEqual([]);
  });

  it('a private key in a body (not JSON, PUT and POST): denied naming private-key@1 and body; a Luhn-valid card number too, not an invalid one', async () => {
    for (const method of ['POST', 'PUT']) {
      const r = await mesh.call('planner', method, upload('/v1/key-body'), { headers: { 'content-type': 'text/plain' }, body: `notes\n${PRIVATE_KEY_BODY}` });
      expect(r.status).toBe(403);
      expect(r.json()).toEqual(deniedFor('private-key@1', 'body'));
    }
    expect(received('/v1/key-body')).toEqual([]);
    const card = await mesh.call('planner', 'POST', upload('/v1/card'), { headers: { 'content-type': 'text/plain' }, body: 'pay with 4111 1111 1111 1111 now' });
    expect(card.json()).toEqual(deniedFor('credit-card@1', 'body'));
    const notCard = await mesh.call('planner', 'POST', upload('/v1/not-card'), { headers: { 'content-type': 'text/plain' }, body: 'order 4111 1111 1111 1112 now' });
    expect(notCard.status).toBe(200);
  });

  it('a body past the scanned 16 KiB: a key inside its prefix is found, one after it is not (README: only the prefix is read); the body arrives whole', async () => {
    const pad = 'lorem ipsum dolor sit amet '.repeat(1000); // 27 KB
    const early = await mesh.call('planner', 'POST', upload('/v1/big-early'), { headers: { 'content-type': 'application/json' }, body: `{"k":"${AWS_KEY}","pad":"${pad}"}` });
    expect(early.json()).toEqual(deniedFor('aws-access-key@1', 'body'));
    const lateBody = `{"pad":"${pad}","k":"late"}`;
    const late = await mesh.call('planner', 'POST', upload('/v1/big-late'), { headers: { 'content-type': 'application/json' }, body: lateBody });
    expect(late.status).toBe(200);
    expect(received('/v1/big-late').map((s) => s.body)).toEqual([lateBody]);
    expect(received('/v1/big-early')).toEqual([]);
  });

  it('a clean request passes, body intact; the same AWS key to a host whose policy has no secrets: passes', async () => {
    const clean = await mesh.call('planner', 'POST', upload('/v1/clean'), { headers: { 'content-type': 'text/plain' }, body: 'hello' });
    expect(clean.status).toBe(200);
    expect(received('/v1/clean').map((s) => s.body)).toEqual(['hello']);
    const open = await mesh.call('planner', 'POST', `http://open.example.test:${plainPort}/v1/open`, { headers: { 'x-api-key': AWS_KEY, 'content-type': 'text/plain' }, body: PRIVATE_KEY_BODY });
    expect(open.status).toBe(200);
    const got = received('/v1/open');
    expect(got.map((s) => [s.headers['x-api-key'], s.body])).toEqual([[AWS_KEY, PRIVATE_KEY_BODY]]);
  });

  it('HTTPS under tls: inspect is scanned inside the TLS (curl through HTTPS_PROXY); a blind tunnel to a guarded host is refused', async () => {
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HTTPS_PROXY: proxy, CURL_CA_BUNDLE: egressCaFile };
    const curl = async (...args: string[]): Promise<{ status: number; body: string } | { error: string }> => {
      try {
        const { stdout } = await run('curl', ['-sS', '--max-time', '20', '-w', '\n%{http_code}', ...args], { env, timeout: 30_000 });
        const cut = stdout.lastIndexOf('\n');
        return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) };
      } catch (err) {
        return { error: (err as { stderr?: string }).stderr ?? String(err) };
      }
    };
    const api = `https://api.example.test:${tlsPort}`;
    const key = await curl('-H', 'content-type: text/plain', '--data-binary', PRIVATE_KEY_BODY, `${api}/v1/tls-key`);
    expect(key).toMatchObject({ status: 403 });
    expect(JSON.parse((key as { body: string }).body)).toEqual(deniedFor('private-key@1', 'body'));
    const jwt = `${Buffer.from('{"alg":"HS256"}').toString('base64url')}.${Buffer.from('{"sub":"a"}').toString('base64url')}.c2lnbmF0dXJl`;
    const bearer = await curl('-H', `authorization: Bearer ${jwt}`, `${api}/v1/tls-jwt`);
    expect(JSON.parse((bearer as { body: string }).body)).toEqual(deniedFor('jwt@1', 'header:authorization'));
    const ok = await curl('-H', 'content-type: text/plain', '--data-binary', 'fine', `${api}/v1/tls-clean`);
    expect(ok).toMatchObject({ status: 200 });
    expect(received('/v1/tls-').map((s) => s.path)).toEqual(['/v1/tls-clean']);
    const blind = await curl(`https://blind.example.test:${tlsPort}/v1/blind`);
    expect(blind).toMatchObject({ error: expect.stringMatching(/403/) as unknown });
    expect(received('/v1/blind')).toEqual([]);
  });

  it('neither process logs the secrets, and the audit names detector and field only, in the schema', async () => {
    // pino writes asynchronously: polled briefly until the last call's audit line is there.
    let cpLog = '';
    for (let i = 0; i < 50 && !cpLog.includes('secrets_unscannable'); i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 100));
      cpLog = readFileSync(join(mesh.dir, 'control-plane.log'), 'utf8');
    }
    const sidecarLog = readFileSync(join(mesh.dir, 'sidecar-planner.log'), 'utf8');
    for (const marker of SECRET_MARKERS) {
      expect(cpLog).not.toContain(marker);
      expect(sidecarLog).not.toContain(marker);
    }
    const events = auditEventsOf(cpLog.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>));
    const denied = events.filter((e) => typeof e.reason === 'string' && e.reason.startsWith('secret_detected'));
    expect(denied.length).toBeGreaterThanOrEqual(8);
    for (const e of events) expect(auditSchemaProblems(e)).toEqual([]);
    expect(denied.find((e) => e.path === '/v1/aws-header')).toMatchObject({ verdict: 'deny', secrets: [{ detector: 'aws-access-key@1', field: 'header:x-api-key' }] });
    // The call let through (no secrets: on its policy) is audited with its findings all the same.
    expect(events.find((e) => e.path === '/v1/open')).toMatchObject({ verdict: 'allow', secrets: [{ detector: 'aws-access-key@1', field: 'header:x-api-key' }, { detector: 'private-key@1', field: 'body' }] });
    expect(events.find((e) => e.host === 'blind.example.test')).toMatchObject({ verdict: 'deny', reason: expect.stringMatching(/^secrets_unscannable: policy "blind"/) as unknown });
  });
});
