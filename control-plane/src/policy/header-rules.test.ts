import { parseSpiffeId } from '@airlock/common/spiffe';
import { AirlockError } from '@airlock/common/errors';
import { describe, expect, it } from 'vitest';
import { headerInput, PolicyEngine, toAgent, type DecisionInput } from './engine.ts';
import { parsePolicyText } from './load.ts';

const TD = 'airlock.test';
const AGENT = parseSpiffeId(`spiffe://${TD}/ns/agents/sa/planner`);
const API = parseSpiffeId(`spiffe://${TD}/ns/tools/sa/api`);

const POLICY = `
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: agents }
spec: { selector: { namespace: agents } }
---
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: tools }
spec: { selector: { namespace: tools } }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: tenants }
spec:
  from: { segments: [agents] }
  to: { segments: [tools] }
  rules:
    - { methods: [GET], paths: [/v1/*], headers: [ { name: X-Tenant, values: [a, b] }, { name: x-debug, present: false } ] }
    - { methods: [GET], paths: [/health], headers: [ { name: x-probe, present: true } ] }
  action: allow
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: no-tenant-z }
spec:
  from: { segments: [agents] }
  to: { segments: [tools] }
  rules: [ { paths: [/v1/*], headers: [ { name: x-tenant, values: [z] } ] } ]
  action: deny
`;

const engine = new PolicyEngine(parsePolicyText(POLICY, 'p.yaml'), TD, 1);
const call = (path: string, headers: [string, string][], incomplete = false): DecisionInput => ({
  source: AGENT, destination: toAgent(API), port: 80, method: 'GET', path,
  headers: headerInput(headers.map(([name, value]) => ({ name, value })), incomplete),
});

describe('header rules', () => {
  it.each<[string, string, [string, string][], boolean, string, string]>([
    ['an allowed value', '/v1/x', [['x-tenant', 'a']], true, 'tenants', 'rules[0]'],
    ['names are case-insensitive', '/v1/x', [['X-TENANT', 'b']], true, 'tenants', 'rules[0]'],
    ['values are exact (case-sensitive)', '/v1/x', [['x-tenant', 'A']], false, '', ''],
    ['another value', '/v1/x', [['x-tenant', 'c']], false, '', ''],
    ['the header absent', '/v1/x', [], false, '', ''],
    ['a header that must be absent is present', '/v1/x', [['x-tenant', 'a'], ['x-debug', '1']], false, '', ''],
    ['the header sent twice (parsers disagree on which counts): the deny on a value matches', '/v1/x', [['x-tenant', 'a'], ['x-tenant', 'a']], false, 'no-tenant-z', 'rules[0]'],
    ['present: true, sent', '/health', [['x-probe', '']], true, 'tenants', 'rules[1]'],
    ['present: true, absent', '/health', [], false, '', ''],
    ['a denied value (deny wins)', '/v1/x', [['x-tenant', 'z']], false, 'no-tenant-z', 'rules[0]'],
  ])('%s', (_why, path, headers, allow, policy, rule) => {
    const d = engine.evaluate(call(path, headers));
    expect({ allow: d.allow, policy: d.policy, rule: d.rule }).toEqual({ allow, policy, rule });
  });

  it('fails closed on a header that was not sent: an allow rule does not match, a deny rule does', () => {
    // x-tenant may have been left out by the sidecar's bounds.
    const allowOnly = engine.evaluate(call('/health', [['x-other', '1']], true));
    expect(allowOnly.allow).toBe(false);
    expect(allowOnly.reason).toContain('header "x-probe" was not sent to the control plane');
    const deny = engine.evaluate(call('/v1/x', [['x-debug', '1']], true));
    expect(deny).toMatchObject({ allow: false, policy: 'no-tenant-z', rule: 'rules[0]' });
    expect(deny.reason).toContain('header "x-tenant" was not sent');
  });

  it('a deny on a value matches a header sent twice', () => {
    const d = engine.evaluate(call('/v1/x', [['x-tenant', 'a'], ['x-tenant', 'z']]));
    expect(d).toMatchObject({ allow: false, policy: 'no-tenant-z' });
    expect(d.reason).toContain('header "x-tenant" was sent 2 times');
  });

  it('headers that were sent are judged even when others were left out', () => {
    expect(engine.evaluate(call('/v1/x', [['x-tenant', 'a'], ['x-debug', '1']], true)).allow).toBe(false);
    expect(engine.evaluate(call('/health', [['x-probe', '1']], true)).allow).toBe(true);
  });

  it('no headers at all (an older sidecar, a tunnel) are absent headers', () => {
    expect(engine.evaluate({ source: AGENT, destination: toAgent(API), port: 80, method: 'GET', path: '/health' }).allow).toBe(false);
  });
});

describe('header rules: globs in values', () => {
  const globs = new PolicyEngine(parsePolicyText(POLICY.replace('values: [a, b] }', 'values: [a, "v1-*", "*-beta", "x*y*z"] }').replace('values: [z] }', 'values: ["z*"] }'), 'p.yaml'), TD, 1);

  it.each<[string, string, boolean, string]>([
    ['an exact value still matches whole', 'a', true, 'tenants'],
    ['not a prefix of an exact value', 'ab', false, ''],
    ['a prefix glob', 'v1-eu', true, 'tenants'],
    ['a prefix glob matches the bare prefix', 'v1-', true, 'tenants'],
    ['a prefix glob is anchored', 'xv1-eu', false, ''],
    ['a suffix glob', 'eu-beta', true, 'tenants'],
    ['a suffix glob is anchored', 'eu-beta2', false, ''],
    ['stars in the middle', 'x-1-y-2-z', true, 'tenants'],
    ['stars in the middle, out of order', 'x-z-y', false, ''],
    ['values are case-sensitive', 'V1-eu', false, ''],
    ['a deny glob wins', 'z-1', false, 'no-tenant-z'],
    ['a deny glob matches across a newline (no regex "." to slip past)', 'z\n1', false, 'no-tenant-z'],
  ])('%s: x-tenant %j', (_why, value, allow, policy) => {
    const d = globs.evaluate(call('/v1/x', [['x-tenant', value]]));
    expect({ allow: d.allow, policy: d.policy }).toEqual({ allow, policy });
  });

  it('a glob still needs the header sent exactly once', () => {
    expect(globs.evaluate(call('/v1/x', [['x-tenant', 'v1-a'], ['x-tenant', 'v1-b']])).allow).toBe(false);
    expect(globs.evaluate(call('/v1/x', [])).allow).toBe(false);
  });

  it('keeps glob values as written', () => {
    const docs = parsePolicyText(doc('[ { name: x-version, values: ["v1-*", v2] } ]'), 'p.yaml');
    expect(docs.policies[0]?.rules[0]?.headers).toEqual([{ name: 'x-version', values: ['v1-*', 'v2'] }]);
  });

  it('rejects a bad pattern with file:line:col', () => {
    expect(() => parsePolicyText(doc('[ { name: x-a, values: ["v1-* "] } ]'), 'p.yaml')).toThrow(/p\.yaml:13:\d+: .*"v1-\* " is not a header value/);
  });
});

describe('usesHeaders', () => {
  it('is true only when some rule has header conditions', () => {
    expect(engine.usesHeaders).toBe(true);
    expect(new PolicyEngine(parsePolicyText(POLICY.replace(/, headers: \[[^\n]*\] \}/g, ' }'), 'p.yaml'), TD, 1).usesHeaders).toBe(false);
    expect(PolicyEngine.empty(TD).usesHeaders).toBe(false);
  });
});

const doc = (headers: string): string => `apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: s }
spec: { selector: { namespace: a } }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: p }
spec:
  from: { segments: [s] }
  to: { hosts: [x.example] }
  rules:
    - headers: ${headers}
  action: allow
`;

describe('header rules: validation', () => {
  it.each([
    ['[ { name: x-a, values: [a], colour: red } ]', 'p.yaml:13:44: unknown field "spec.rules[].headers[].colour"'],
    ['[ { name: x-a } ]', 'p.yaml:13:18: "spec.rules[].headers[]" needs exactly one of "values"'],
    ['[ { name: x-a, values: [a], present: true } ]', 'needs exactly one of "values"'],
    ['[ { name: x-a, values: [] } ]', '"spec.rules[].headers[].values" must list at least one value'],
    ['[ { name: x-a, present: "no" } ]', '"spec.rules[].headers[].present" must be true or false'],
    ['[ { name: "bad name", present: true } ]', '"bad name" is not an HTTP header name'],
    ['[ { name: Authorization, present: true } ]', '"authorization" is never sent to the control plane'],
    ['[ { name: cookie, values: [a] } ]', '"cookie" is never sent'],
    ['[ { name: proxy-authorization, present: false } ]', '"proxy-authorization" is never sent'],
    ['[ { name: host, values: [a] } ]', '"host" is never sent'],
    ['[ { name: Airlock-Ticket, present: true } ]', '"airlock-ticket" is never sent'],
    ['[ { name: x-a, values: [" a"] } ]', 'is not a header value'],
    ['{ name: x-a }', '"spec.rules[].headers" must be a list'],
  ])('%s', (headers, message) => {
    let err: unknown;
    try {
      parsePolicyText(doc(headers), 'p.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AirlockError);
    expect((err as Error).message).toContain(message);
    expect((err as Error).message).toMatch(/p\.yaml:\d+:\d+: /);
  });

  it('keeps names in lower case', () => {
    const docs = parsePolicyText(doc('[ { name: X-Tenant, values: [a] }, { name: x-b, present: false } ]'), 'p.yaml');
    expect(docs.policies[0]?.rules[0]?.headers).toEqual([{ name: 'x-tenant', values: ['a'] }, { name: 'x-b', present: false }]);
  });
});
