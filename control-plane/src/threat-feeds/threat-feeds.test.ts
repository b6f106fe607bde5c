import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { createRootLogger } from '@airlock/common/logging';
import { createRegistry } from '@airlock/common/telemetry';
import { AuthorizeRequest, Direction, Verdict } from '@airlock/proto/authorization/v1';
import { describe, expect, it } from 'vitest';
import { NO_AUDIT, type DecisionRecord } from '../audit/event.ts';
import { DecisionState } from '../authz/decision-state.ts';
import { Approvals } from '../authz/approvals/approvals.ts';
import { Authorizer } from '../authz/authorize.ts';
import { explain } from '../authz/explain.ts';
import { createControlPlaneMetrics } from '../monitoring/metrics.ts';
import { PolicyEngine } from '../policy/engine.ts';
import { parsePolicyDocuments, parsePolicyText } from '../policy/load.ts';
import { parseFeed } from './entries.ts';
import { ThreatFeeds } from './threat-feeds.ts';
import { ThreatIndex } from './threat-index.ts';

const TD = 'airlock.test';
const A = `spiffe://${TD}/ns/demo/sa/a`;

const index = (text: string, format: 'list' | 'stix' = 'list'): ThreatIndex => new ThreatIndex([{ name: 'bad', version: 'sha256:0', entries: parseFeed(text, format).entries }]);

describe('threat feed entries', () => {
  it('reads a plain list: domains, IPs in any spelling, CIDRs, # comments; bad lines counted, not fatal', () => {
    const feed = parseFeed('# a feed\nEvil.Example\n*.wild.example\n10.1.2.3 # inline\n192.0.2.0/24\n2001:db8::/32\n\nnot a domain!\n300.1.2.3/8\n10.0.0.0/33\n', 'list');
    expect(feed.entries.map((e) => e.text)).toEqual(['evil.example', '*.wild.example', '10.1.2.3', '192.0.2.0/24', '2001:db8::/32']);
    expect(feed.badLines).toBe(3);
    expect(feed.badSamples[0]).toMatch(/^line 8: /);
  });

  it('reads STIX 2.1 indicators on domain-name, ipv4-addr and ipv6-addr (OR-ed; not revoked or expired); others are counted bad', () => {
    const bundle = {
      type: 'bundle',
      id: 'bundle--1',
      objects: [
        { type: 'identity', id: 'identity--1', name: 'x' },
        { type: 'indicator', id: 'indicator--1', pattern_type: 'stix', pattern: "[domain-name:value = 'c2.example']" },
        { type: 'indicator', id: 'indicator--2', pattern_type: 'stix', pattern: "[ipv4-addr:value = '198.51.100.0/24' OR ipv6-addr:value = '2001:db8:1::7']" },
        { type: 'indicator', id: 'indicator--3', pattern_type: 'stix', pattern: "[file:hashes.'SHA-256' = 'abc']" },
        { type: 'indicator', id: 'indicator--4', pattern_type: 'sigma', pattern: 'x' },
        { type: 'indicator', id: 'indicator--5', pattern_type: 'stix', pattern: "[domain-name:value = 'old.example']", revoked: true },
        { type: 'indicator', id: 'indicator--6', pattern_type: 'stix', pattern: "[domain-name:value = 'expired.example']", valid_until: '2020-01-01T00:00:00Z' },
        { type: 'indicator', id: 'indicator--7', pattern: "[domain-name:value = 'a.example'] OR [domain-name:value = 'b.example']", valid_until: '2999-01-01T00:00:00Z' },
        { type: 'indicator', id: 'indicator--8', pattern_type: 'stix', pattern: "[domain-name:value = 'c.example' AND domain-name:value = 'd.example']" },
      ],
    };
    const feed = parseFeed(JSON.stringify(bundle), 'stix');
    expect(feed.entries.map((e) => e.text)).toEqual(['c2.example', '198.51.100.0/24', '2001:db8:1::7', 'a.example', 'b.example']);
    expect(feed.badLines).toBe(3);
    expect(() => parseFeed('{"type":"report"}', 'stix')).toThrow(/not a STIX bundle/);
  });

  it('matches a listed domain and its subdomains, not a name that merely ends the same', () => {
    const i = index('evil.example\n*.wild.example\n');
    expect(i.match('evil.example')?.entry).toBe('evil.example');
    expect(i.match('a.b.EVIL.example.')?.entry).toBe('evil.example');
    expect(i.match('x.wild.example')?.entry).toBe('*.wild.example');
    expect(i.match('notevil.example')).toBeUndefined();
    expect(i.match('example')).toBeUndefined();
  });

  it('matches an address in any spelling against listed addresses and ranges', () => {
    const i = index('10.1.2.3\n192.0.2.0/24\n2001:db8::/32\n::ffff:203.0.113.9\n');
    // …and as the IPv6 a NAT64 (64:ff9b::/96) or 6to4 (2002::/16) translator turns into it.
    for (const spelling of ['10.1.2.3', '167838211', '0x0a.0x01.0x02.0x03', '012.1.2.3', '10.1.515', '::ffff:10.1.2.3', '[::ffff:a01:203]', '64:ff9b::a01:203', '[64:ff9b::10.1.2.3]', '2002:a01:203::1']) {
      expect(i.match(spelling)?.entry, spelling).toBe('10.1.2.3');
    }
    expect(i.match('192.0.2.200')?.entry).toBe('192.0.2.0/24');
    expect(i.match('64:ff9b::c000:2c8')?.entry).toBe('192.0.2.0/24');
    expect(i.match('64:ff9b::a01:204')).toBeUndefined();
    expect(i.match('2001:db8:ffff::1')?.entry).toBe('2001:db8::/32');
    expect(i.match('2001:0DB8:0000::0001')?.entry).toBe('2001:db8::/32');
    expect(i.match('203.0.113.9')?.entry).toBe('::ffff:203.0.113.9');
    expect(i.match('10.1.2.4')).toBeUndefined();
    expect(i.match('192.0.3.1')).toBeUndefined();
    expect(i.match('2001:db9::1')).toBeUndefined();
  });

  it('masks prefixes that end inside a group or a byte', () => {
    const i = index('2001:db8::/33\n10.64.0.0/10\nfe80::1:2/127\n');
    expect(i.match('2001:db8:7fff::1')?.entry).toBe('2001:db8::/33');
    expect(i.match('2001:db8:8000::1')).toBeUndefined();
    expect(i.match('10.127.255.255')?.entry).toBe('10.64.0.0/10');
    expect(i.match('10.128.0.0')).toBeUndefined();
    expect(i.match('fe80::1:3')?.entry).toBe('fe80::1:2/127');
    expect(i.match('fe80::1:4')).toBeUndefined();
    expect(index('0.0.0.0/0\n').match('93.184.216.34')?.entry).toBe('0.0.0.0/0');
  });

  it('indexes a large feed in slices as it does at once', async () => {
    const entries = parseFeed(Array.from({ length: 5000 }, (_, n) => `h${n}.bad.test\n10.${n >> 8}.${n & 255}.1`).join('\n'), 'list').entries;
    const built = await ThreatIndex.build([{ name: 'bad', version: 'v', entries }]);
    expect(built.size).toBe(10_000);
    expect(built.match('x.h4999.bad.test')?.entry).toBe('h4999.bad.test');
    expect(built.match('10.19.135.1')?.entry).toBe('10.19.135.1');
  });
});

describe('ThreatFeed documents', () => {
  const doc = (spec: string): string => `apiVersion: airlock.dev/v1\nkind: ThreatFeed\nmetadata: { name: bad }\nspec: ${spec}\n`;

  it('are validated with the policy bundle, defaults filled', () => {
    const { ordered } = parsePolicyDocuments(doc('{ source: { file: /etc/feeds/bad.txt } }'), 'f.yaml');
    expect(ordered[0]).toMatchObject({ kind: 'ThreatFeed', doc: { name: 'bad', source: { file: '/etc/feeds/bad.txt' }, format: 'list', refreshSeconds: 300 } });
    const https = parsePolicyDocuments(doc('{ source: { url: "https://feeds.example/x.json", caFile: /ca.pem }, format: stix, refreshSeconds: 60 }'), 'f.yaml');
    expect(https.ordered[0]).toMatchObject({ doc: { source: { url: 'https://feeds.example/x.json', caFile: '/ca.pem' }, format: 'stix', refreshSeconds: 60 } });
  });

  it.each([
    ['{ source: { url: "http://feeds.example/x" } }', /must be https/],
    ['{ source: { file: relative.txt } }', /absolute path/],
    ['{ source: { file: /a, url: "https://x.example/" } }', /exactly one of/],
    ['{ source: { file: /a }, format: csv }', /"list" or "stix"/],
    ['{ source: { file: /a }, refreshSeconds: 0 }', /whole number/],
    ['{ source: { file: /a }, other: 1 }', /unknown field "spec.other"/],
  ])('refuses %s', (spec, message) => {
    expect(() => parsePolicyText(doc(spec), 'f.yaml')).toThrow(message);
  });
});

describe('a threat feed match in Authorize', () => {
  const SEGMENT = `apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: all }
spec: { selector: { namespace: demo } }
`;
  const POLICY = `${SEGMENT}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: anywhere }
spec: { from: { segments: [all] }, to: { hosts: ['*.example', evil.example, 10.1.2.3] }, action: allow, mode: dry-run }
`;

  it('denies egress a policy allows (even dry-run), naming feed, version and entry in the answer and the audit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'feeds-'));
    writeFileSync(join(dir, 'bad.txt'), 'evil.example\n10.1.2.3\nnot valid!\n');
    const decisions = new DecisionState(new PolicyEngine(parsePolicyText(POLICY, 'p.yaml'), TD, 1));
    const feeds = new ThreatFeeds({ decisions, registry: createRegistry('test'), logger: createRootLogger({ process: 'test', level: 'silent' }) });
    const [feedDoc] = parsePolicyDocuments(`apiVersion: airlock.dev/v1\nkind: ThreatFeed\nmetadata: { name: bad }\nspec: { source: { file: ${join(dir, 'bad.txt')} } }\n`, 'f.yaml').ordered;
    if (feedDoc?.kind !== 'ThreatFeed') throw new Error('no feed');
    feeds.configure([feedDoc.doc]);
    await expect.poll(() => feeds.status()[0]?.version).toMatch(/^sha256:[0-9a-f]{16}$/);
    const lines: DecisionRecord[] = [];
    const registry = createRegistry('test');
    const authorizer = new Authorizer({ trustDomain: TD, decisions: () => decisions.current(), metrics: createControlPlaneMetrics(registry), audit: { ...NO_AUDIT, decision: (r) => void lines.push(r) } });
    const ask = (host: string, destinationAddresses: string[] = []) => authorizer.authorize(parseSpiffeId(A), AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: A, destinationHost: host, destinationPort: 443, method: 'CONNECT', destinationAddresses }));
    const version = feeds.status()[0]?.version ?? '';
    expect(feeds.status()[0]).toMatchObject({ entries: 2, badEntries: 1 });
    for (const [host, entry] of [['api.evil.example', 'evil.example'], ['0x0a010203', '10.1.2.3']] as const) {
      const answer = ask(host);
      expect(answer).toMatchObject({ verdict: Verdict.VERDICT_DENY, dryRunDeny: false });
      expect(answer.reason).toBe(`threat_feed: ${host} is listed by threat feed "bad" (version ${version}, entry "${entry}")`);
      expect(lines.at(-1)).toMatchObject({ verdict: 'deny', mode: 'enforce', threat: { feed: 'bad', version, entry } });
    }
    // A name, while the feed lists addresses: no decision (nothing audited) until its addresses are sent.
    const audited = lines.length;
    expect(ask('good.example')).toMatchObject({ verdict: Verdict.VERDICT_DENY, addressesRequired: true });
    expect(lines).toHaveLength(audited);
    // …but counted: a sidecar that asks and never calls shows in the metrics.
    expect(await registry.getSingleMetricAsString('airlock_authz_refused_total')).toMatch(/reason="addresses_required"[^\n]*\} 1$/m);
    expect(ask('good.example', ['192.0.2.1', '2001:db8::1'])).toMatchObject({ verdict: Verdict.VERDICT_ALLOW, addressesRequired: false });
    expect(lines.at(-1)?.threat).toBeUndefined();
    // Judged on every address: one in the list denies, naming it; a name the feed lists needs none.
    const resolved = ask('good.example', ['192.0.2.1', '10.1.2.3']);
    expect(resolved).toMatchObject({ verdict: Verdict.VERDICT_DENY, addressesRequired: false });
    expect(resolved.reason).toBe(`threat_feed: good.example resolved to 10.1.2.3, listed by threat feed "bad" (version ${version}, entry "10.1.2.3")`);
    expect(lines.at(-1)).toMatchObject({ verdict: 'deny', threat: { feed: 'bad', version, entry: '10.1.2.3' } });
    // Only IP addresses, and a bounded number of them, are taken.
    for (const bad of [['evil.example'], ['10.1.2.3/8'], Array.from({ length: 65 }, (_, i) => `192.0.2.${i}`)]) expect(() => ask('good.example', bad)).toThrow(/destination address/);
    feeds.close();
  });

  it('judges the addresses of a call a rule holds for a human approval before holding it: a listed one is denied, never held', () => {
    const held = `${SEGMENT}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: tools }
spec:
  from: { segments: [all] }
  to: { hosts: [mcp.example], ports: [443] }
  rules: [{ mcp: { methods: [tools/call], tools: [transfer] }, approve: required }]
  action: allow
`;
    const decisions = new DecisionState(new PolicyEngine(parsePolicyText(held, 'p.yaml'), TD, 1));
    decisions.replace({ threats: index('10.1.2.3\n') });
    const approvals = new Approvals();
    const authorizer = new Authorizer({ trustDomain: TD, decisions: () => decisions.current(), metrics: createControlPlaneMetrics(createRegistry('test')), audit: NO_AUDIT, approvals });
    const ask = (destinationAddresses: string[]) =>
      authorizer.authorize(parseSpiffeId(A), AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: A, destinationHost: 'mcp.example', destinationPort: 443, method: 'POST', path: '/mcp', mcpMethod: 'tools/call', mcpTool: 'transfer', mcpArguments: '{}', destinationAddresses }));
    // Not held on its name alone: an approved call would then be dialled at addresses no feed judged.
    expect(ask([])).toMatchObject({ verdict: Verdict.VERDICT_DENY, addressesRequired: true, approvalId: '' });
    expect(approvals.pending()).toHaveLength(0);
    const listed = ask(['192.0.2.1', '10.1.2.3']);
    expect(listed).toMatchObject({ verdict: Verdict.VERDICT_DENY, addressesRequired: false, approvalId: '' });
    expect(listed.reason).toMatch(/^threat_feed: mcp\.example resolved to 10\.1\.2\.3/);
    expect(approvals.pending()).toHaveLength(0);
    const clean = ask(['192.0.2.1']);
    expect(clean).toMatchObject({ verdict: Verdict.VERDICT_APPROVAL_PENDING });
    expect(approvals.pending().map((r) => r.id)).toEqual([clean.approvalId]);
    approvals.decide(clean.approvalId, false, 'test', undefined);
  });

  it('explain (airlock explain) answers what Authorize would: the same decide path', () => {
    const engine = new PolicyEngine(parsePolicyText(POLICY, 'p.yaml'), TD, 1);
    const threats = index('evil.example\n');
    const explained = explain({ engine, agents: new Map(), revoked: new Set(), quarantined: new Map(), threats }, TD, { from: A, host: 'api.evil.example', port: 443, method: 'GET', path: '/' });
    expect(explained).toMatchObject({ allow: false, threat: { feed: 'bad', entry: 'evil.example' } });
    expect(explained.reason).toMatch(/^threat_feed: api\.evil\.example is listed by threat feed "bad"/);
  });

  it('refuses a source that is not a regular file (a device would be read forever), keeping nothing it has not loaded', async () => {
    const feeds = new ThreatFeeds({ decisions: new DecisionState(PolicyEngine.empty(TD)), registry: createRegistry('test'), logger: createRootLogger({ process: 'test', level: 'silent' }) });
    feeds.configure([{ name: 'zero', source: { file: '/dev/zero' }, format: 'list', refreshSeconds: 60, at: '' }]);
    await expect.poll(() => feeds.status()[0]?.lastError).toBe('/dev/zero is not a regular file');
    expect(feeds.status()[0]).toMatchObject({ entries: 0 });
    expect(feeds.status()[0]?.version).toBeUndefined();
    feeds.close();
  });

  it('exports the age of a feed that never loaded (since it was taken up), so the stale-feed alert fires for it too', async () => {
    const registry = createRegistry('test');
    const feeds = new ThreatFeeds({ decisions: new DecisionState(PolicyEngine.empty(TD)), registry, logger: createRootLogger({ process: 'test', level: 'silent' }) });
    feeds.configure([{ name: 'gone', source: { file: '/nonexistent/feed.txt' }, format: 'list', refreshSeconds: 60, at: '' }]);
    await expect.poll(() => feeds.status()[0]?.lastError).toBeDefined();
    expect(await registry.getSingleMetricAsString('airlock_threat_feed_age_seconds')).toMatch(/^airlock_threat_feed_age_seconds\{[^}]*feed="gone"[^}]*\} [0-9.]+$/m);
    feeds.close();
  });
});
