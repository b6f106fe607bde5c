import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { boundPort, closeServer } from '@airlock/common/net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminGet, adminPost } from '../cli/src/admin-client.ts';
import { auditEventsOf, auditSchemaProblems } from '../control-plane/src/testing/audit-events.ts';
import { createTestCa } from '../sidecar/src/testing/certs.ts';
import { airlock } from './support/airlock-cli.ts';
import { startLoopbackDns } from './support/loopback-dns.ts';
import { rawHttp } from './support/raw-http.ts';
import { startMesh, type Mesh } from './support/mesh.ts';

interface FeedStatus {
  name: string;
  lastAttemptAt?: string;
  version?: string;
  entries: number;
  badEntries: number;
  badSamples: string[];
  lastError?: string;
  ageSeconds?: number;
}

const stix = (ips: readonly string[]): string =>
  JSON.stringify({
    type: 'bundle',
    id: 'bundle--5d0092c5-5f74-4287-9642-33f4c354e56d',
    objects: ips.map((ip, i) => ({ type: 'indicator', spec_version: '2.1', id: `indicator--0000000${i}-0000-4000-8000-000000000000`, pattern_type: 'stix', pattern: `[ipv4-addr:value = '${ip}']`, valid_from: '2026-01-01T00:00:00Z' })),
  });

/**
 * ThreatFeed documents, applied as any policy document, loaded by the control plane from a file and
 * from a loopback HTTPS URL (its CA named), deny calls through a real sidecar to a listed domain (and
 * its subdomains) or address (in any spelling) whatever the policies allow, naming the feed, its
 * version and the entry; a reload that adds an entry takes effect; a broken feed keeps its last good copy.
 */
describe('threat feeds deny listed egress destinations through a real sidecar', () => {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-feeds-'));
  const listFile = join(dir, 'bad-domains.txt');
  const caFile = join(dir, 'feed-ca.pem');
  const credentials = join(dir, 'admin.json');
  let mesh: Mesh;
  let external: Server;
  /** The same external host on 127.0.0.2, where the feed names resolve (127.0.0.1 is listed by url-feed). */
  let externalTwo: Server;
  /** A listed address (127.0.0.77, in range-feed's 127.0.0.64/26) on the external port: it must get no connection. */
  let listedAddress: TcpServer;
  let listedReached = 0;
  let feedServer: Server;
  let dns: { port: number; close(): void };
  let externalPort = 0;
  let hits = 0;
  let feedBody = stix(['127.0.0.1']);

  beforeAll(async () => {
    external = createHttpServer((req, res) => {
      hits++;
      res.end(`external ok (Host ${req.headers.host ?? ''})`);
    });
    await new Promise<void>((r) => external.listen(0, '127.0.0.1', r));
    externalPort = boundPort(external);
    externalTwo = createHttpServer((req, res) => {
      hits++;
      res.end(`external ok (Host ${req.headers.host ?? ''})`);
    });
    await new Promise<void>((r) => externalTwo.listen(externalPort, '127.0.0.2', r));
    listedAddress = createTcpServer((s) => {
      listedReached++;
      s.destroy();
    });
    await new Promise<void>((r) => listedAddress.listen(externalPort, '127.0.0.77', r));
    const ca = createTestCa('Feed Test CA');
    const leaf = ca.issue({ dnsNames: ['localhost'], ips: ['127.0.0.1'], ttlMs: 3_600_000 });
    writeFileSync(caFile, ca.certPem);
    feedServer = createHttpsServer({ key: leaf.keyPem, cert: leaf.certPem }, (_req, res) => res.end(feedBody));
    await new Promise<void>((r) => feedServer.listen(0, '127.0.0.1', r));
    dns = await startLoopbackDns(new Map([...['evil.feed.test', 'api.evil.feed.test', 'later.feed.test', 'clean.feed.test', 'notevil.feed.test', 'unlisted.feed.test'].map((n): [string, string] => [n, '127.0.0.2']), ['ranged.feed.test', '127.0.0.77'], ['loopback.feed.test', '127.0.0.1'], ['clean.held.test', '127.0.0.2'], ['listed.held.test', '127.0.0.77']]));
    writeFileSync(listFile, '# known bad\nevil.feed.test\nthis is not an entry\n');
    const policy = `apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: agents }
spec: { selector: { namespace: agents } }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: anywhere }
spec:
  from: { segments: [agents] }
  to: { hosts: ['*.feed.test', 127.0.0.1], ports: [${externalPort}] }
  action: allow
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: held-tools }
spec:
  from: { segments: [agents] }
  to: { hosts: ['*.held.test'], ports: [${externalPort}] }
  rules: [{ methods: [POST], paths: [/mcp], mcp: { methods: [tools/call], tools: [transfer] }, approve: required, approvalTimeout: 30s }]
  action: allow
`;
    mesh = await startMesh({ agents: ['agent'], policy, authzTimeout: '5s', sidecarArgs: ['--egress-dns-servers', `127.0.0.1:${dns.port}`, '--egress-allow-cidrs', '127.0.0.0/8'] });
    writeFileSync(credentials, JSON.stringify(mesh.creds));
  }, 120_000);

  afterAll(async () => {
    await mesh.close();
    await closeServer(external);
    await closeServer(externalTwo);
    await closeServer(listedAddress);
    await closeServer(feedServer);
    dns.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const get = (host: string) => mesh.call('agent', 'GET', `http://${host}:${externalPort}/`);
  const feeds = async (): Promise<Map<string, FeedStatus>> => new Map(((await adminGet(mesh.creds, '/v1/threat-feeds')) as { items: FeedStatus[] }).items.map((f) => [f.name, f]));
  /** Polls (bounded: 15 s) until `ok` holds. */
  async function until<T>(read: () => Promise<T>, ok: (v: T) => boolean): Promise<T> {
    for (let i = 0; i < 150; i++) {
      const v = await read();
      if (ok(v)) return v;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('condition never held');
  }

  it('denies a listed domain, its subdomains and a listed address in every spelling, naming feed, version and entry', async () => {
    // Allowed by the policy before any feed: what the feeds below must overrule.
    for (const host of ['api.evil.feed.test', '127.0.0.1']) expect((await get(host)).status, host).toBe(200);
    const feedsFile = join(dir, 'feeds.yaml');
    writeFileSync(
      feedsFile,
      `apiVersion: airlock.dev/v1
kind: ThreatFeed
metadata: { name: file-feed }
spec: { source: { file: ${listFile} }, refreshSeconds: 1 }
---
apiVersion: airlock.dev/v1
kind: ThreatFeed
metadata: { name: url-feed }
spec: { source: { url: "https://127.0.0.1:${boundPort(feedServer)}/feed.json", caFile: ${caFile} }, format: stix, refreshSeconds: 1 }
`,
    );
    expect((await airlock(['validate', '-f', feedsFile], credentials)).stdout).toBe('valid: 0 segment(s), 0 policies, 2 threat feed(s)\n');
    const applied = await airlock(['apply', '-f', feedsFile, '-o', 'json'], credentials);
    expect(JSON.parse(applied.stdout)).toMatchObject({ changed: true });
    const loaded = await until(feeds, (f) => f.get('file-feed')?.version !== undefined && f.get('url-feed')?.version !== undefined);
    expect(loaded.get('file-feed')).toMatchObject({ entries: 1, badEntries: 1, badSamples: ['line 3: more than one entry on the line'] });
    expect(loaded.get('url-feed')).toMatchObject({ entries: 1, badEntries: 0 });
    // `airlock get threat-feeds` says the same, bad lines quoted.
    const cli = await airlock(['get', 'threat-feeds'], credentials);
    expect(cli.code).toBe(0);
    expect(cli.stdout).toMatch(/^file-feed +sha256:[0-9a-f]{16} +1 +1 +\d+s/m);
    expect(cli.stdout).toMatch(/^url-feed +sha256:[0-9a-f]{16} +1 +0 /m);
    expect(cli.stdout).toContain('file-feed: line 3: more than one entry on the line');
    const fileVersion = loaded.get('file-feed')?.version ?? '';
    const urlVersion = loaded.get('url-feed')?.version ?? '';

    const before = hits;
    const denied: string[] = [];
    for (const [host, feed, version, entry] of [
      ['evil.feed.test', 'file-feed', fileVersion, 'evil.feed.test'],
      ['api.evil.feed.test', 'file-feed', fileVersion, 'evil.feed.test'],
      ['127.0.0.1', 'url-feed', urlVersion, '127.0.0.1'],
      ['2130706433', 'url-feed', urlVersion, '127.0.0.1'],
      ['0x7f.0.0.1', 'url-feed', urlVersion, '127.0.0.1'],
      ['[::ffff:127.0.0.1]', 'url-feed', urlVersion, '127.0.0.1'],
    ] as const) {
      const res = await get(host);
      expect(res.status, host).toBe(403);
      const body = res.json<{ reason: string; decisionId: string }>();
      expect(body.reason, host).toMatch(new RegExp(`^threat_feed: .* is listed by threat feed "${feed}" \\(version ${version.replace(':', '\\:')}, entry "${entry.replace(/\./g, '\\.')}"\\)$`));
      denied.push(body.decisionId);
    }
    // The CONNECT twin (a tunnel is judged on its authority): refused before any tunnel opens.
    for (const authority of [`api.evil.feed.test:${externalPort}`, `0x7f000001:${externalPort}`]) {
      const tunnel = await rawHttp(mesh.agent('agent').outboundPort, `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`, { timeoutMs: 5000 });
      expect(tunnel.status, authority).toBe(403);
      const body = JSON.parse(tunnel.body) as { reason: string; decisionId: string };
      expect(body.reason, authority).toMatch(/^threat_feed: .* is listed by threat feed "(file|url)-feed"/);
      denied.push(body.decisionId);
    }
    expect(hits).toBe(before);
    // Not listed: a name that only ends the same way.
    expect((await get('notevil.feed.test')).status).toBe(200);

    // The audit names the feed, version and entry, in the schema.
    const events = await until(
      () => Promise.resolve(auditEventsOf(readFileSync(join(mesh.dir, 'control-plane.log'), 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>))),
      (e) => denied.every((id) => e.some((x) => x.decisionId === id)),
    );
    for (const id of denied) {
      const event = events.find((e) => e.decisionId === id);
      expect(event).toMatchObject({ verdict: 'deny', threat: { feed: expect.stringMatching(/^(file|url)-feed$/) as unknown, version: expect.stringMatching(/^sha256:/) as unknown } });
      expect(auditSchemaProblems(event)).toEqual([]);
    }
  });

  it('a reload that adds an entry takes effect', async () => {
    expect((await get('later.feed.test')).status).toBe(200);
    writeFileSync(listFile, '# known bad\nevil.feed.test\nlater.feed.test\n');
    const res = await until(() => get('later.feed.test'), (r) => r.status === 403);
    expect(res.json<{ reason: string }>().reason).toMatch(/listed by threat feed "file-feed" .*entry "later\.feed\.test"/);
  });

  it('a feed that fails to load keeps its last good copy, and says how old it is', async () => {
    const good = await feeds();
    unlinkSync(listFile);
    feedBody = '{"type": "not a bundle"';
    const broken = await until(feeds, (f) => f.get('file-feed')?.lastError !== undefined && f.get('url-feed')?.lastError !== undefined);
    expect(broken.get('file-feed')).toMatchObject({ version: good.get('file-feed')?.version, entries: 2, lastError: expect.stringMatching(/ENOENT/) as unknown });
    expect(broken.get('url-feed')).toMatchObject({ version: good.get('url-feed')?.version, entries: 1, lastError: expect.stringMatching(/not JSON/) as unknown });
    for (const host of ['later.feed.test', 'api.evil.feed.test', '127.0.0.1']) expect((await get(host)).status, host).toBe(403);
    const cli = await airlock(['get', 'threat-feeds', 'file-feed'], credentials);
    expect(cli.stdout).toMatch(/^file-feed +sha256:[0-9a-f]{16} +2 +0 +\d+s +.*ENOENT/m);
    const metrics = await (await fetch(`http://127.0.0.1:${mesh.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/^airlock_threat_feed_age_seconds\{feed="url-feed",process="control-plane"\} [0-9.]+$/m);
    expect(metrics).toMatch(/^airlock_threat_feed_last_load_ok\{feed="file-feed",process="control-plane"\} 0$/m);
    expect(metrics).toMatch(/^airlock_threat_feed_refresh_seconds\{feed="file-feed",process="control-plane"\} 1$/m);
    expect(metrics).toMatch(/^airlock_threat_feed_load_failures_total\{feed="file-feed",process="control-plane"\} [1-9][0-9]*$/m);
    expect(metrics).toMatch(/^airlock_threat_feed_bad_entries\{feed="file-feed",process="control-plane"\} 0$/m);
  });

  it('a feed pointed at a secret file never quotes it: not in the status, the CLI or the log', async () => {
    // An editor (not an admin) points feeds at the control plane's admin token, in both formats, and
    // at a file whose lines are not entries: the viewer-readable status must not become a file reader.
    const token = readFileSync(join(mesh.dataDir, 'admin-token'), 'utf8').trim();
    const secretFile = join(dir, 'secret.txt');
    writeFileSync(secretFile, `password = hunter2-${token.slice(0, 8)}\nkey: ${token}\n`);
    const yaml = [
      ['token-list', join(mesh.dataDir, 'admin-token'), 'list'],
      ['token-stix', join(mesh.dataDir, 'admin-token'), 'stix'],
      ['secret-list', secretFile, 'list'],
      ['secret-stix', secretFile, 'stix'],
    ]
      .map(([name, file, format]) => `apiVersion: airlock.dev/v1\nkind: ThreatFeed\nmetadata: { name: ${name} }\nspec: { source: { file: ${file} }, format: ${format} }\n`)
      .join('---\n');
    const file = join(dir, 'secret-feeds.yaml');
    writeFileSync(file, yaml);
    expect((await airlock(['apply', '-f', file], credentials)).code).toBe(0);
    const status = await until(feeds, (f) => ['token-list', 'token-stix', 'secret-list', 'secret-stix'].every((n) => f.get(n)?.lastAttemptAt !== undefined));
    expect(status.get('token-stix')?.lastError).toBe('not JSON');
    expect(status.get('secret-list')).toMatchObject({ badEntries: 2, badSamples: ['line 1: more than one entry on the line', 'line 2: more than one entry on the line'] });
    const shown = [JSON.stringify([...status.values()]), (await airlock(['get', 'threat-feeds', '-o', 'json'], credentials)).stdout, (await airlock(['get', 'threat-feeds'], credentials)).stdout];
    const log = readFileSync(join(mesh.dir, 'control-plane.log'), 'utf8');
    for (const text of [...shown, log]) {
      // Lines are read in lower case: so is the check.
      expect(text.toLowerCase()).not.toContain(token.slice(0, 12).toLowerCase());
      expect(text).not.toContain('hunter2');
    }
  });

  it('a deleted feed lists nothing from the next call', async () => {
    expect((await get('127.0.0.1')).status).toBe(403);
    const deleted = await airlock(['delete', 'threat-feed', 'url-feed'], credentials);
    expect(deleted.code).toBe(0);
    expect((await get('127.0.0.1')).status).toBe(200);
    expect([...(await feeds()).keys()]).not.toContain('url-feed');
  });

  it('judges a name by every address it resolves to, and dials only that answer: HTTP and CONNECT', async () => {
    const rangeFile = join(dir, 'ranges.txt');
    writeFileSync(rangeFile, '127.0.0.64/26\n');
    const feedsFile = join(dir, 'range-feed.yaml');
    writeFileSync(feedsFile, `apiVersion: airlock.dev/v1\nkind: ThreatFeed\nmetadata: { name: range-feed }\nspec: { source: { file: ${rangeFile} }, refreshSeconds: 1 }\n`);
    expect((await airlock(['apply', '-f', feedsFile], credentials)).code).toBe(0);
    const version = (await until(feeds, (f) => f.get('range-feed')?.version !== undefined)).get('range-feed')?.version ?? '';
    const reason = `threat_feed: ranged.feed.test resolved to 127.0.0.77, listed by threat feed "range-feed" (version ${version}, entry "127.0.0.64/26")`;
    const before = hits;
    // Plain HTTP through the proxy: the name is not listed, the address its DNS answer holds is.
    const res = await get('ranged.feed.test');
    expect(res.status).toBe(403);
    expect(res.json<{ reason: string }>().reason).toBe(reason);
    // The CONNECT twin (a blind tunnel: the port is not a plain-HTTP one).
    const authority = `ranged.feed.test:${externalPort}`;
    const tunnel = await rawHttp(mesh.agent('agent').outboundPort, `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`, { timeoutMs: 5000 });
    expect(tunnel.status).toBe(403);
    expect((JSON.parse(tunnel.body) as { reason: string }).reason).toBe(reason);
    expect(listedReached).toBe(0);
    expect(hits).toBe(before);
    // A name whose answer is not listed passes, both ways, reaching the address it was judged on.
    const clean = await get('unlisted.feed.test');
    expect(clean.status).toBe(200);
    expect(clean.text).toBe(`external ok (Host unlisted.feed.test:${externalPort})`);
    // A request inside the tunnel, Connection: close: the host answers and closes, and so does the tunnel.
    const inside = `GET / HTTP/1.1\r\nHost: unlisted.feed.test:${externalPort}\r\nConnection: close\r\n\r\n`;
    const open = await rawHttp(mesh.agent('agent').outboundPort, `CONNECT unlisted.feed.test:${externalPort} HTTP/1.1\r\nHost: unlisted.feed.test:${externalPort}\r\n\r\n${inside}`, { timeoutMs: 5000 });
    expect(open.status).toBe(200);
    expect(open.body).toContain(`external ok (Host unlisted.feed.test:${externalPort})`);
    expect(listedReached).toBe(0);
  });

  it('judges the addresses of a call held for a human approval before it is held: a listed answer is denied, a clean one is held, approved and dialled at that answer', async () => {
    const listFile = join(dir, 'held.txt');
    writeFileSync(listFile, '127.0.0.77\n');
    const feedFile = join(dir, 'held-feed.yaml');
    writeFileSync(feedFile, `apiVersion: airlock.dev/v1\nkind: ThreatFeed\nmetadata: { name: held-feed }\nspec: { source: { file: ${listFile} } }\n`);
    expect((await airlock(['apply', '-f', feedFile], credentials)).code).toBe(0);
    const version = (await until(feeds, (f) => f.get('held-feed')?.version !== undefined)).get('held-feed')?.version ?? '';
    const pending = async (): Promise<{ id: string; destination: string }[]> => ((await adminGet(mesh.creds, '/v1/approvals')) as { items: { id: string; destination: string }[] }).items;
    const transfer = (host: string) =>
      mesh.call('agent', 'POST', `http://${host}:${externalPort}/mcp`, { headers: { 'content-type': 'application/json', accept: 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'transfer', arguments: { amount: 5 } } }) });
    const before = hits;

    // Its name is clean, its answer is listed: denied as such (a JSON-RPC error: the agent is an MCP
    // client), and no one is asked to approve it.
    const listed = await transfer('listed.held.test');
    expect(listed.status).toBe(200);
    expect(listed.json<{ error: { message: string } }>().error.message).toBe(`threat_feed: listed.held.test resolved to 127.0.0.77, listed by threat feed "held-feed" (version ${version}, entry "127.0.0.77")`);
    expect(await pending()).toEqual([]);
    expect(listedReached).toBe(0);

    // A clean answer: held until approved, then dialled at the answer judged.
    const call = transfer('clean.held.test');
    const held = await until(pending, (p) => p.length === 1);
    expect(held[0]?.destination).toBe('clean.held.test');
    expect(hits).toBe(before);
    await adminPost(mesh.creds, '/v1/approvals/approve', { id: held[0]?.id });
    const approved = await call;
    expect(approved.status).toBe(200);
    expect(approved.text).toBe(`external ok (Host clean.held.test:${externalPort})`);
    expect(hits).toBe(before + 1);
    expect(listedReached).toBe(0);
  });
});
