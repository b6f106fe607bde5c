import { AirlockError } from '@airlock/common/errors';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { describe, expect, it } from 'vitest';
import { PolicyEngine, toAgent, toHost, type DecisionInput } from './engine.ts';
import { parsePolicyText } from './load.ts';
import { normalizePath } from './path.ts';

const TD = 'airlock.test';
const id = (ns: string, sa: string): ReturnType<typeof parseSpiffeId> => parseSpiffeId(`spiffe://${TD}/ns/${ns}/sa/${sa}`);

const POLICY = `
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: researchers }
spec:
  selector: { namespace: agents, serviceAccounts: ["research-*"] }
---
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: tools }
spec:
  selector: { namespace: tools }
---
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: trial }
spec:
  selector: { namespace: trial }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: researchers-to-tools }
spec:
  from: { segments: [researchers] }
  to:   { segments: [tools], ports: [8080] }
  rules: [ { methods: [GET, POST], paths: ["/v1/search/*", "/health"] } ]
  action: allow
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: no-tool-admin }
spec:
  from: { segments: [researchers] }
  to:   { segments: [tools] }
  rules: [ { paths: ["/v1/search/admin/*"] } ]
  action: deny
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: researchers-to-openai }
spec:
  from: { segments: [researchers] }
  to:   { hosts: ["api.openai.com", "*.example.com"], ports: [443] }
  action: allow
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: maybe-block-uploads }
spec:
  from: { segments: [researchers] }
  to:   { hosts: ["*.example.com"] }
  rules: [ { methods: [PUT] } ]
  action: deny
  mode: dry-run
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: trial-to-tools }
spec:
  from: { segments: [trial] }
  to:   { segments: [tools] }
  rules: [ { methods: [GET] } ]
  action: allow
  mode: dry-run
`;

const engine = new PolicyEngine(parsePolicyText(POLICY, 'policy.yaml'), TD);
const researcher = id('agents', 'research-1');
const tool = id('tools', 'search');

function call(over: Partial<DecisionInput>): DecisionInput {
  return { source: researcher, destination: toAgent(tool), port: 8080, method: 'GET', path: '/v1/search/q', ...over };
}

describe('policy evaluation', () => {
  const cases: { name: string; input: DecisionInput; allow: boolean; policy: string; reason: RegExp | string; dryRunDeny?: boolean }[] = [
    { name: 'allow by segment, method and prefix path', input: call({}), allow: true, policy: 'researchers-to-tools', reason: 'allowed by policy "researchers-to-tools"' },
    { name: 'prefix matches its own base', input: call({ path: '/v1/search' }), allow: true, policy: 'researchers-to-tools', reason: /allowed/ },
    { name: 'query string is stripped', input: call({ path: '/v1/search/q?x=../admin' }), allow: true, policy: 'researchers-to-tools', reason: /allowed/ },
    { name: 'exact path', input: call({ path: '/health' }), allow: true, policy: 'researchers-to-tools', reason: /allowed/ },
    { name: 'exact path does not match below it', input: call({ path: '/health/x' }), allow: false, policy: '', reason: /^no policy allows GET \/health\/x/ },
    { name: 'prefix does not match a sibling', input: call({ path: '/v1/searchx' }), allow: false, policy: '', reason: /no policy allows/ },
    { name: 'deny wins over allow', input: call({ path: '/v1/search/admin/users' }), allow: false, policy: 'no-tool-admin', reason: /policy "no-tool-admin" denies GET \/v1\/search\/admin\/users/ },
    { name: 'default deny: method not listed', input: call({ method: 'DELETE' }), allow: false, policy: '', reason: /^no policy allows DELETE/ },
    { name: 'default deny: port not listed', input: call({ port: 9090 }), allow: false, policy: '', reason: /no policy allows/ },
    { name: 'default deny: source in no segment', input: call({ source: id('agents', 'writer') }), allow: false, policy: '', reason: /no policy allows/ },
    { name: 'glob on service account', input: call({ source: id('agents', 'research-anything') }), allow: true, policy: 'researchers-to-tools', reason: /allowed/ },
    { name: 'glob needs the whole name', input: call({ source: id('agents', 'x-research-1') }), allow: false, policy: '', reason: /no policy allows/ },
    { name: 'foreign trust domain is in no segment', input: call({ source: parseSpiffeId('spiffe://evil.test/ns/agents/sa/research-1') }), allow: false, policy: '', reason: /no policy allows/ },
    { name: 'external exact host', input: call({ destination: toHost('api.openai.com'), port: 443, method: 'CONNECT', path: '' }), allow: true, policy: 'researchers-to-openai', reason: /allowed/ },
    { name: 'host match ignores case and a trailing dot', input: call({ destination: toHost('API.OpenAI.com.'), port: 443 }), allow: true, policy: 'researchers-to-openai', reason: /allowed/ },
    { name: 'wildcard host matches a subdomain', input: call({ destination: toHost('a.b.example.com'), port: 443 }), allow: true, policy: 'researchers-to-openai', reason: /allowed/ },
    { name: 'wildcard host does not match the apex', input: call({ destination: toHost('example.com'), port: 443 }), allow: false, policy: '', reason: /no policy allows/ },
    { name: 'host suffix trick', input: call({ destination: toHost('api.openai.com.evil.io'), port: 443 }), allow: false, policy: '', reason: /no policy allows/ },
    { name: 'external host on a port not listed', input: call({ destination: toHost('api.openai.com'), port: 80 }), allow: false, policy: '', reason: /no policy allows/ },
    { name: 'dry-run deny lets through and says so', input: call({ destination: toHost('up.example.com'), port: 443, method: 'PUT', path: '/f' }), allow: true, policy: 'maybe-block-uploads', reason: /^would deny: policy "maybe-block-uploads" denies PUT \/f/, dryRunDeny: true },
    { name: 'dry-run source: allowed call is plain allow', input: call({ source: id('trial', 'bot') }), allow: true, policy: 'trial-to-tools', reason: /allowed/ },
    { name: 'dry-run allow: what it does not allow is let through as would-deny', input: call({ source: id('trial', 'bot'), method: 'POST' }), allow: true, policy: 'trial-to-tools', reason: /^would deny: no policy allows POST/, dryRunDeny: true },
    { name: 'dry-run allow opens nothing outside its destination', input: call({ source: id('trial', 'bot'), destination: toHost('api.openai.com'), port: 443 }), allow: false, policy: '', reason: /^no policy allows/ },
    { name: 'dry-run deny does not turn a default deny into allow', input: call({ destination: toHost('up.example.com'), port: 80, method: 'PUT', path: '/f' }), allow: false, policy: '', reason: /^no policy allows PUT/ },
    // Bypass attempts: all refused before any policy is consulted.
    { name: 'dot-segment', input: call({ path: '/v1/search/../admin' }), allow: false, policy: '', reason: /^ambiguous path/ },
    { name: 'double slash', input: call({ path: '//admin' }), allow: false, policy: '', reason: /^ambiguous path/ },
    { name: 'encoded dot-segment', input: call({ path: '/%2e%2e/admin' }), allow: false, policy: '', reason: /^ambiguous path/ },
    { name: 'encoded dot-segment upper case', input: call({ path: '/v1/search/%2E%2E/admin' }), allow: false, policy: '', reason: /^ambiguous path/ },
    { name: 'dot-segment with ";" parameters', input: call({ path: '/v1/search/..;/admin' }), allow: false, policy: '', reason: /^ambiguous path: it contains a dot-segment/ },
    { name: 'encoded dot-segment with ";" parameters', input: call({ path: '/v1/search/%2e%2E;jsessionid=1/admin' }), allow: false, policy: '', reason: /^ambiguous path: it contains a dot-segment/ },
    { name: 'a deny matches the path without its ";" parameters too', input: call({ path: '/v1/search;x/admin;y=z/users' }), allow: false, policy: 'no-tool-admin', reason: /^policy "no-tool-admin" denies GET \/v1\/search;x\/admin;y=z\/users/ },
    { name: 'an allow matches the path as sent, ";" parameters included', input: call({ path: '/v1/search/q;jsessionid=1' }), allow: true, policy: 'researchers-to-tools', reason: /allowed/ },
    { name: 'an allow does not match a segment with ";" parameters as the segment without', input: call({ path: '/v1/search;x/q' }), allow: false, policy: '', reason: /^no policy allows GET \/v1\/search;x\/q/ },
    { name: 'encoded slash', input: call({ path: '/v1%2Fadmin' }), allow: false, policy: '', reason: /^ambiguous path/ },
    { name: 'encoded slash lower case', input: call({ path: '/v1/search%2fq' }), allow: false, policy: '', reason: /^ambiguous path/ },
    { name: 'encoded backslash', input: call({ path: '/v1/search/%5c..' }), allow: false, policy: '', reason: /^ambiguous path/ },
    { name: 'backslash', input: call({ path: '/v1/search\\..\\admin' }), allow: false, policy: '', reason: /^ambiguous path/ },
    { name: 'NUL', input: call({ path: '/v1/search/q%00' }), allow: false, policy: '', reason: /^ambiguous path/ },
    // Found by path.fuzz.test.ts: WHATWG URL trims a final space, url.parse (Express) a final Unicode one.
    { name: 'a trailing space', input: call({ path: '/v1/search/admin/users ' }), allow: false, policy: '', reason: /^ambiguous path: it contains a space/ },
    { name: 'a trailing no-break space', input: call({ path: '/v1/search/admin/users\u00a0' }), allow: false, policy: '', reason: /^ambiguous path: it contains a space/ },
    { name: 'a trailing byte-order mark', input: call({ path: '/health\ufeff' }), allow: false, policy: '', reason: /^ambiguous path: it contains a space/ },
    { name: 'no leading slash', input: call({ path: 'v1/search/q' }), allow: false, policy: '', reason: /^ambiguous path/ },
    { name: 'absolute-form URL', input: call({ path: 'http://search.tools/v1/search/q' }), allow: false, policy: '', reason: /^ambiguous path/ },
    { name: 'lower-case method does not match GET', input: call({ method: 'get' }), allow: false, policy: '', reason: /no policy allows get/ },
    { name: 'encoded unreserved chars are decoded before matching', input: call({ path: '/v1/%73earch/q' }), allow: true, policy: 'researchers-to-tools', reason: /allowed/ },
  ];
  it.each(cases)('$name', ({ input, allow, policy, reason, dryRunDeny }) => {
    const d = engine.evaluate(input);
    expect({ allow: d.allow, policy: d.policy, dryRunDeny: d.dryRunDeny }).toEqual({ allow, policy, dryRunDeny: dryRunDeny ?? false });
    expect(d.reason).toMatch(reason);
  });

  it('denies everything without policies', () => {
    const d = PolicyEngine.empty(TD).evaluate(call({}));
    expect(d).toMatchObject({ allow: false, policy: '', dryRunDeny: false });
    expect(d.reason).toMatch(/^no policy allows/);
  });

  it('computes segment membership', () => {
    expect(engine.segmentsOf(researcher)).toEqual(['researchers']);
    expect(engine.segmentsOf(tool)).toEqual(['tools']);
  });
});

describe('policy evaluation: host policies are for external hosts, segment policies for agents', () => {
  // `egress` may reach external hosts only; `all` covers every agent, so a slip would show.
  const engine = new PolicyEngine(
    parsePolicyText(
      `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: egress }\nspec: { selector: { namespace: agents, serviceAccounts: [egress] } }\n---\n` +
        `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: all }\nspec: { selector: { namespace: "*" } }\n---\n` +
        `apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: egress-out }\nspec: { from: { segments: [egress] }, to: { hosts: [api.openai.com, "*.demo", "*.example.com", researcher.agents] }, action: allow }\n---\n` +
        `apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: egress-to-tools }\nspec: { from: { segments: [egress] }, to: { segments: [all] }, rules: [ { paths: [/open] } ], action: allow }\n`,
      'p.yaml',
    ),
    TD,
    1,
  );
  const egress = id('agents', 'egress');
  const ask = (destination: DecisionInput['destination'], path = '/v1/admin'): ReturnType<PolicyEngine['evaluate']> => engine.evaluate({ source: egress, destination, port: 443, method: 'GET', path });

  it('a host policy admits its external hosts (the control case)', () => {
    for (const host of ['api.openai.com', 'API.OpenAI.com.', 'researcher.demo', 'a.example.com', 'researcher.agents']) {
      expect(ask(toHost(host)), host).toMatchObject({ allow: true, policy: 'egress-out' });
    }
  });

  it('a host policy never admits a call into an agent, whatever agent or name', () => {
    for (const agent of [id('agents', 'researcher'), id('demo', 'researcher'), id('com', 'a.example')]) {
      const d = ask(toAgent(agent));
      expect(d, agent.uri).toMatchObject({ allow: false, policy: '' });
      // The reason names the agent by its mesh host, never by a host name the caller chose.
      expect(d.reason).toBe(`no policy allows GET /v1/admin from ${egress.uri} to ${agent.serviceAccount}.${agent.namespace}:443`);
    }
    expect(engine.callableTools({ source: egress, destination: toAgent(id('agents', 'researcher')), port: 443, method: 'POST', path: '/mcp' }, ['x'])).toEqual([]);
  });

  it('a segment policy admits agents, never an external host', () => {
    expect(ask(toAgent(id('agents', 'researcher')), '/open')).toMatchObject({ allow: true, policy: 'egress-to-tools' });
    expect(ask(toHost('unregistered.agents'), '/open')).toMatchObject({ allow: false, policy: '' });
  });
});

describe('normalizePath', () => {
  it.each([
    ['/a/b?c=d', '/a/b'],
    ['/a/%7euser', '/a/~user'],
    ['/a/%20b', '/a/%20b'],
    ['/a/%3a', '/a/%3A'],
    ['/', '/'],
  ])('%s → %s', (raw, want) => {
    expect(normalizePath(raw)).toEqual({ ok: true, path: want, plain: want });
  });
  it.each(['/a/./b', '/a/.', '/a/%2E/b', '/a//b', '/a/%zz', '', '*', '/a%2F', '/a%5C', '/a\u0000', '/a\u0007'])('refuses %j', (raw) => {
    expect(normalizePath(raw).ok).toBe(false);
  });
  // Tomcat, Jetty and Spring remove a segment's `;` parameters, then resolve dot-segments.
  it.each([
    '/v1/..;/admin', '/v1/%2e%2e;/admin', '/v1/.;/admin', '/v1/..;x=y/admin', '/v1/%2E%2e;jsessionid=1/admin', '/v1/.%2e;/admin',
    '/v1/..;', '/v1/.;', '/..;/admin', '/v1/..%3B/admin', '/v1/..%3bx/admin', '/v1/%2e%2e%3B/admin', '/v1/..;a;b/admin', '/v1/..;/',
  ])('refuses %j: a dot-segment once its ";" parameters are removed', (raw) => {
    expect(normalizePath(raw)).toEqual({ ok: false, why: expect.stringMatching(/^it contains a dot-segment \("\.{1,2}" once its ";" parameters are removed\)$/) as unknown });
  });
  it.each(['/v1/;/admin', '/;x/admin', '/v1/;jsessionid=1', '/v1/%3B/admin', '/v1/%3bx'])('refuses %j: an empty segment once its ";" parameters are removed', (raw) => {
    expect(normalizePath(raw)).toEqual({ ok: false, why: 'it contains an empty segment (once its ";" parameters are removed)' });
  });
  it.each([
    ['/v1/search;jsessionid=1', '/v1/search;jsessionid=1'],
    ['/v1/a;b/c', '/v1/a;b/c'],
    ['/v1/...;/x', '/v1/...;/x'],
    ['/v1/.x;/y', '/v1/.x;/y'],
    ['/v1/x.;/y', '/v1/x.;/y'],
    ['/v1/a%3bx', '/v1/a%3Bx'],
    ['/v1/x?a=..;', '/v1/x'],
  ])('keeps %j (no dot or empty segment once parameters are removed)', (raw, want) => {
    expect(normalizePath(raw)).toMatchObject({ ok: true, path: want });
  });
  it.each([
    ['/v1/search', '/v1/search'],
    ['/v1/admin;x/users', '/v1/admin/users'],
    ['/v1/admin;x=y;z/users;jsessionid=1', '/v1/admin/users'],
    ['/v1/a%3bx/b', '/v1/a/b'],
    ['/v1/a;x/', '/v1/a/'],
  ])('reads %j without its ";" parameters as %j too', (raw, plain) => {
    expect(normalizePath(raw)).toMatchObject({ ok: true, plain });
  });
});

describe('policy loading', () => {
  function problemsOf(text: string): string {
    try {
      parsePolicyText(text, 'p.yaml');
    } catch (err) {
      expect(err).toBeInstanceOf(AirlockError);
      expect((err as AirlockError).code).toBe('AIRLOCK_POLICY_INVALID');
      return (err as AirlockError).message;
    }
    throw new Error('expected the policy to be refused');
  }
  const segment = 'apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: a }\nspec:\n  selector: { namespace: x }\n';

  it('names file:line and the field of an unknown field', () => {
    expect(problemsOf(`${segment}---\napiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec:\n  from: { segments: [a] }\n  to: { segments: [a], hostz: [x] }\n  action: allow\n`)).toContain(
      'p.yaml:12:24: unknown field "spec.to.hostz"',
    );
  });

  it('names file:line of a reference to a missing segment', () => {
    const msg = problemsOf(`${segment}---\napiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec:\n  from:\n    segments:\n      - a\n      - ghosts\n  to: { segments: [a] }\n  action: allow\n`);
    expect(msg).toContain('p.yaml:14:9: Policy "p" spec.from.segments names segment "ghosts", which is not defined');
  });

  it('refuses bad actions, modes, methods, paths and YAML syntax', () => {
    const base = (spec: string): string => `${segment}---\napiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec:\n  from: { segments: [a] }\n  to: { segments: [a] }\n${spec}`;
    expect(problemsOf(base('  action: permit\n'))).toMatch(/p\.yaml:\d+:\d+: "spec\.action" must be one of allow, deny/);
    expect(problemsOf(base('  action: allow\n  mode: maybe\n'))).toMatch(/"spec\.mode" must be one of enforce, dry-run/);
    expect(problemsOf(base('  action: allow\n  rules: [ { methods: [get] } ]\n'))).toMatch(/"get" is not an upper-case HTTP method/);
    expect(problemsOf(base('  action: allow\n  rules: [ { paths: ["/a/../b"] } ]\n'))).toMatch(/dot-segment/);
    expect(problemsOf(base('  action: allow\n  rules: [ { paths: ["/a/..;/b/*"] } ]\n'))).toContain('"/a/..;/b/*" is not a usable path: it contains a dot-segment (".." once its ";" parameters are removed)');
    expect(problemsOf(base('  action: allow\n  rules: [ { paths: ["/a/;x/b"] } ]\n'))).toContain('"/a/;x/b" is not a usable path: it contains an empty segment (once its ";" parameters are removed)');
    expect(problemsOf(base('  action: allow\n  rules: [ { paths: ["/a;x/b/*"] } ]\n'))).toContain('"/a;x/b/*" is not a usable path: it has ";" parameters (rules match requests with and without theirs)');
    expect(problemsOf(base('  action: allow\n  rules: [ { paths: ["/a*b"] } ]\n'))).toMatch(/only as a final/);
    expect(problemsOf(base(''))).toMatch(/"spec\.action" is required/);
    expect(problemsOf('kind: [unclosed\n')).toMatch(/^invalid policy:\n {2}- p\.yaml:\d+:\d+: /);
    expect(problemsOf(`${segment}---\n${segment}`)).toMatch(/Segment "a" is defined twice/);
  });

  it('refuses bad spiffeIds selectors with file:line:col, and unknown selector fields', () => {
    const seg = (selector: string): string => `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: s }\nspec:\n  selector: ${selector}\n`;
    expect(problemsOf(seg('{ spiffeIds: ["spiffe://td/ns/agents/sa/bot*"] }'))).toContain('p.yaml:5:27: "spec.selector.spiffeIds": "spiffe://td/ns/agents/sa/bot*" is not a valid SPIFFE ID');
    expect(problemsOf(seg('{ spiffeIds: ["https://td/ns/a/sa/b"] }'))).toMatch(/p\.yaml:5:27: "spec\.selector\.spiffeIds": .*must start with spiffe:\/\//);
    expect(problemsOf(seg('{ spiffeIds: [] }'))).toMatch(/p\.yaml:5:26: "spec\.selector\.spiffeIds" must list at least one SPIFFE ID/);
    expect(problemsOf(seg('{ spiffeIds: "spiffe://td/ns/a/sa/b" }'))).toMatch(/"spec\.selector\.spiffeIds" must be a list/);
    expect(problemsOf(seg('{ spiffeId: ["spiffe://td/ns/a/sa/b"] }'))).toMatch(/p\.yaml:5:15: unknown field "spec\.selector\.spiffeId"/);
  });

  it('selects by exact SPIFFE IDs alone, or together with namespace and service accounts', () => {
    const text = `
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: pinned }
spec: { selector: { spiffeIds: ["spiffe://${TD}/ns/agents/sa/planner"] } }
---
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: tools-and-one }
spec: { selector: { namespace: tools, spiffeIds: ["spiffe://${TD}/ns/agents/sa/helper"] } }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: pinned-out }
spec: { from: { segments: [pinned, tools-and-one] }, to: { hosts: [api.example.com] }, action: allow }
`;
    const engine = new PolicyEngine(parsePolicyText(text, 'p.yaml'), TD, 1);
    const call = (source: ReturnType<typeof parseSpiffeId>): boolean => engine.evaluate({ source, destination: toHost('api.example.com'), port: 443, method: 'GET', path: '/' }).allow;
    expect(call(id('agents', 'planner'))).toBe(true);
    expect(call(id('agents', 'helper'))).toBe(true);
    expect(call(id('tools', 'anything'))).toBe(true);
    // Exact: not a prefix, not another namespace, not another trust domain; spiffeIds alone select no one else.
    expect(call(id('agents', 'planner2'))).toBe(false);
    expect(call(id('agents', 'plan'))).toBe(false);
    expect(call(id('other', 'planner'))).toBe(false);
    expect(call(parseSpiffeId('spiffe://other.td/ns/agents/sa/planner'))).toBe(false);
  });

  it('needs exactly one of to.segments and to.hosts', () => {
    expect(problemsOf(`${segment}---\napiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec:\n  from: { segments: [a] }\n  to: { ports: [80] }\n  action: allow\n`)).toMatch(
      /exactly one of "segments" or "hosts"/,
    );
  });
});

describe('PolicyEngine: the index', () => {
  const seg = (name: string, selector: string): string => `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: ${name} }\nspec: { selector: ${selector} }\n`;
  const pol = (name: string, spec: string): string => `apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: ${name} }\nspec: ${spec}\n`;
  const build = (...docs: string[]): PolicyEngine => new PolicyEngine(parsePolicyText(docs.join('---\n'), 'p.yaml'), TD, 1);
  const call = (over: Partial<DecisionInput>): DecisionInput => ({ source: id('agents', 'planner'), destination: toAgent(id('tools', 'search')), port: 80, method: 'GET', path: '/', ...over });

  it('takes the policies of every segment of both agents, in file order, each once', () => {
    const engine = build(
      seg('agents', '{ namespace: agents }'),
      seg('planners', '{ serviceAccounts: [planner] }'),
      seg('tools', '{ namespace: tools }'),
      seg('search', '{ serviceAccounts: ["search*"] }'),
      pol('first', '{ from: { segments: [planners, agents] }, to: { segments: [search, tools] }, rules: [ { methods: [GET] } ], action: allow }'),
      pol('second', '{ from: { segments: [agents] }, to: { segments: [tools] }, action: allow }'),
      pol('no-post', '{ from: { segments: [planners] }, to: { segments: [search] }, rules: [ { methods: [POST] } ], action: deny }'),
      pol('by-host', '{ from: { segments: [agents] }, to: { hosts: ["*.tools"] }, rules: [ { methods: [PUT] } ], action: allow }'),
    );
    expect(engine.evaluate(call({}))).toMatchObject({ allow: true, policy: 'first' });
    expect(engine.evaluate(call({ method: 'DELETE' }))).toMatchObject({ allow: true, policy: 'second' });
    // The deny is filed under other segments of both agents than the allows before it: it still wins.
    expect(engine.evaluate(call({ method: 'POST' }))).toMatchObject({ allow: false, policy: 'no-post' });
    expect(engine.evaluate(call({ method: 'PUT', destination: toHost('search.tools') }))).toMatchObject({ allow: true, policy: 'by-host' });
    expect(engine.evaluate(call({ method: 'PUT', destination: toHost('search.tools.evil') }))).toMatchObject({ allow: false, policy: '' });
    expect(engine.evaluate(call({ destination: toAgent(id('other', 'x')) }))).toMatchObject({ allow: false, policy: '' });
  });

  it('matches methods past the 30 it numbers', () => {
    const methods = Array.from({ length: 34 }, (_, i) => `M${String.fromCharCode(65 + (i % 26))}${i < 26 ? '' : 'X'}`);
    const engine = build(
      seg('agents', '{ namespace: agents }'),
      seg('tools', '{ namespace: tools }'),
      pol('many', `{ from: { segments: [agents] }, to: { segments: [tools] }, rules: [ { methods: [${methods.slice(0, 31).join(', ')}] }, { methods: [${methods.slice(31).join(', ')}], paths: [/x] } ], action: allow }`),
    );
    for (const m of methods.slice(0, 31)) expect(engine.evaluate(call({ method: m })).allow, m).toBe(true);
    for (const m of methods.slice(31)) {
      expect(engine.evaluate(call({ method: m, path: '/x' })).allow, m).toBe(true);
      expect(engine.evaluate(call({ method: m })).allow, m).toBe(false);
    }
    expect(engine.evaluate(call({ method: 'GET' })).allow).toBe(false);
  });
});
