import { parseSpiffeId } from '@airlock/common/spiffe';
import { AirlockError } from '@airlock/common/errors';
import { argumentsJson, MAX_MCP_ARGUMENT_DEPTH, parseArgumentsJson } from '@airlock/common/mcp-arguments';
import { describe, expect, it } from 'vitest';
import { filePathProblem } from './arguments.ts';
import { PolicyEngine, toAgent, type DecisionInput } from './engine.ts';
import { parsePolicyText } from './load.ts';

const TD = 'airlock.test';
const AGENT = parseSpiffeId(`spiffe://${TD}/ns/agents/sa/planner`);
const TOOLS = parseSpiffeId(`spiffe://${TD}/ns/tools/sa/mcp`);

const SEGMENTS = `
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: agents }
spec: { selector: { namespace: agents } }
---
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: tools }
spec: { selector: { namespace: tools } }
`;

const POLICY = `${SEGMENTS}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: bank }
spec:
  from: { segments: [agents] }
  to: { segments: [tools] }
  rules:
    - methods: [POST]
      paths: [/mcp]
      mcp:
        tools: [transfer]
        arguments:
          - { path: amount, min: 0, max: 100 }
          - { path: currency, equals: USD, loggable: true }
          - { path: memo, maxLength: 8, regex: "[a-z ]*" }
          - { path: dryRun, present: false }
    - { methods: [POST], paths: [/mcp], mcp: { tools: [read_file], arguments: [ { path: path, filePath: ["/data/*"] } ] } }
    - { methods: [POST], paths: [/mcp], mcp: { tools: [lookup], arguments: [ { path: to.account, oneOf: [a1, a2] }, { path: "items[1]", glob: "x*" } ] } }
    - { methods: [POST], paths: [/mcp], mcp: { tools: [search] } }
  action: allow
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: no-big-search }
spec:
  from: { segments: [agents] }
  to: { segments: [tools] }
  rules: [ { paths: [/mcp], mcp: { tools: [search], arguments: [ { path: limit, min: 1000 } ] } } ]
  action: deny
`;

const engine = new PolicyEngine(parsePolicyText(POLICY, 'p.yaml'), TD, 2);
const call = (tool: string, args: unknown): DecisionInput => {
  const sent = argumentsJson(args);
  return { source: AGENT, destination: toAgent(TOOLS), port: 80, method: 'POST', path: '/mcp', mcp: { method: 'tools/call', tool, arguments: 'json' in sent ? parseArgumentsJson(sent.json) : sent } };
};
const decide = (tool: string, args: unknown) => engine.evaluate(call(tool, args));

describe('argument rules', () => {
  it('allow transfer up to 100 USD and refuse 101, naming the argument but not its value', () => {
    const ok = decide('transfer', { amount: 100, currency: 'USD', memo: 'rent' });
    expect(ok).toMatchObject({ allow: true, policy: 'bank', rule: 'rules[0]' });
    // The audit line's view: paths, values redacted unless loggable.
    expect(ok.arguments).toEqual([
      { path: 'amount', value: '[redacted]' },
      { path: 'currency', value: '"USD"' },
      { path: 'memo', value: '[redacted]' },
      { path: 'dryRun', value: '(absent)' },
    ]);
    const no = decide('transfer', { amount: 101, currency: 'USD' });
    expect(no).toMatchObject({ allow: false, policy: '' });
    expect(no.reason).toMatch(/argument "amount" is above the maximum 100$/);
    expect(no.reason).not.toContain('101');
    expect(no.arguments).toEqual([{ path: 'amount', value: '[redacted]' }]);
    expect(decide('transfer', { amount: -1, currency: 'USD' }).allow).toBe(false);
    expect(decide('transfer', { amount: 5, currency: 'EUR' }).reason).toMatch(/argument "currency" \("EUR"\) is not "USD"/);
    expect(decide('transfer', { amount: 5, currency: 'USD', memo: 'too long memo' }).allow).toBe(false);
    expect(decide('transfer', { amount: 5, currency: 'USD', memo: 'ABC' }).allow).toBe(false);
    expect(decide('transfer', { amount: 5, currency: 'USD', memo: 'ok', dryRun: false }).reason).toMatch(/argument "dryRun" is sent/);
    expect(decide('transfer', { currency: 'USD' }).reason).toMatch(/argument "amount" is not sent/);
  });

  it('fail closed on a value of another type: a number as a string, a huge or non-finite number', () => {
    expect(decide('transfer', { amount: '50', currency: 'USD' }).reason).toMatch(/"amount" is not a number/);
    expect(decide('transfer', { amount: 2 ** 60, currency: 'USD' }).allow).toBe(false);
    expect(decide('transfer', { amount: [50], currency: 'USD' }).allow).toBe(false);
    expect(decide('transfer', { amount: 50, currency: ['USD'] }).allow).toBe(false);
  });

  it('read_file only under /data/, refusing path tricks rather than normalizing them', () => {
    expect(decide('read_file', { path: '/data/reports/q1.txt' }).allow).toBe(true);
    for (const path of ['/data/../etc/passwd', '/data/./x', '/data//x', '/data/%2e%2e/etc', '/data/%2E%2E/etc', '/data\\..\\etc', 'data/x', '/etc/passwd', '/data', '/database/x', '/data/x\u0000', '/data/..']) {
      const d = decide('read_file', { path });
      expect(d.allow, path).toBe(false);
    }
    expect(decide('read_file', { path: '/data/../etc/passwd' }).reason).toMatch(/not a file path in normal form \(a "\.\." segment\)/);
  });

  it('nested paths and indexes, own properties only', () => {
    expect(decide('lookup', { to: { account: 'a1' }, items: ['q', 'xy'] }).allow).toBe(true);
    expect(decide('lookup', { to: { account: 'a3' }, items: ['q', 'xy'] }).allow).toBe(false);
    expect(decide('lookup', { to: { account: 'a1' }, items: ['xy'] }).allow).toBe(false);
    // A key of Object.prototype is not an argument that was sent.
    expect(decide('lookup', { to: 'a1', items: { 1: 'xy' } }).allow).toBe(false);
    expect(engine.evaluate(call('lookup', JSON.parse('{"to":{"__proto__":{"account":"a1"}},"items":["q","xy"]}'))).allow).toBe(false);
  });

  it('a deny rule on arguments denies what it names, and what it cannot judge', () => {
    expect(decide('search', { limit: 10 }).allow).toBe(true);
    expect(decide('search', { limit: 5000 })).toMatchObject({ allow: false, policy: 'no-big-search', rule: 'rules[0]' });
    expect(decide('search', { limit: 5000 }).reason).toMatch(/: its argument conditions hold$/);
    const typed = decide('search', { limit: '5000' });
    expect(typed).toMatchObject({ allow: false, policy: 'no-big-search' });
    expect(typed.reason).toMatch(/its argument conditions hold or cannot be judged \(argument "limit" is not a number within ±2\^53 \(it is a string\)\)$/);
    expect(decide('search', {})).toMatchObject({ allow: true });
  });

  it('arguments that cannot be read or are over the bounds: allow rules on arguments never match, deny rules do', () => {
    let deep: unknown = 1;
    for (let i = 0; i <= MAX_MCP_ARGUMENT_DEPTH; i++) deep = { d: deep };
    const over = argumentsJson({ amount: 1, currency: 'USD', d: deep });
    expect(over).toEqual({ unreadable: `the tool arguments are nested deeper than ${MAX_MCP_ARGUMENT_DEPTH}` });
    const why = (r: { json: string } | { unreadable: string }): string => ('unreadable' in r ? r.unreadable : '');
    expect(why(argumentsJson(Object.fromEntries(Array.from({ length: 600 }, (_, i) => [`k${i}`, i]))))).toMatch(/more than 512 values/);
    expect(why(argumentsJson({ s: 'x'.repeat(20_000) }))).toMatch(/larger than 16384 bytes/);
    expect(why(argumentsJson([1]))).toMatch(/not a JSON object/);
    expect(parseArgumentsJson('{"a":')).toEqual({ unreadable: 'the tool arguments are not valid JSON' });
    const d = decide('transfer', { amount: 1, currency: 'USD', d: deep });
    expect(d.allow).toBe(false);
    expect(d.reason).toMatch(/the tool arguments cannot be judged: the tool arguments are nested deeper than 8/);
    expect(decide('search', { d: deep })).toMatchObject({ allow: false, policy: 'no-big-search' });
    // No arguments sent at all (an older sidecar): not judged, fail closed.
    const none = engine.evaluate({ ...call('transfer', {}), mcp: { method: 'tools/call', tool: 'transfer' } });
    expect(none.reason).toMatch(/no arguments were sent/);
  });

  it('list phase: a tool with argument rules is listed if some call could be allowed; a deny on arguments does not hide it', () => {
    const input = call('x', {});
    expect(engine.callableTools(input, ['transfer', 'read_file', 'search', 'delete'])).toEqual(['transfer', 'read_file', 'search']);
  });
});

describe('argument rules are validated with file:line:col', () => {
  const bad = (rule: string): string => {
    const text = `${SEGMENTS}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: p }
spec:
  from: { segments: [agents] }
  to: { segments: [tools] }
  rules:
    - mcp:
        tools: [t]
        arguments:
          - ${rule}
  action: allow
`;
    try {
      parsePolicyText(text, 'p.yaml');
    } catch (err) {
      expect(err).toBeInstanceOf(AirlockError);
      return (err as Error).message;
    }
    throw new Error(`accepted: ${rule}`);
  };

  it('refuses regexes RE2 cannot run in linear time, and over-long ones', () => {
    expect(bad('{ path: a, regex: "(a)\\\\1" }')).toMatch(/p\.yaml:22:\d+: "spec\.rules\[\]\.mcp\.arguments\[\]\.regex" is not an RE2 regular expression/);
    expect(bad('{ path: a, regex: "(?=a)b" }')).toMatch(/not an RE2 regular expression/);
    expect(bad(`{ path: a, regex: "${'a'.repeat(300)}" }`)).toMatch(/longer than 256 characters/);
  });

  it('refuses bad paths, empty conditions, mixed types, a glob on a file path, and conditions with present: false', () => {
    expect(bad('{ path: "a..b", equals: 1 }')).toMatch(/p\.yaml:22:\d+: .*is not an argument path/);
    expect(bad('{ path: a }')).toMatch(/needs a condition/);
    expect(bad('{ path: a, min: 1, maxLength: 3 }')).toMatch(/cannot have both number conditions/);
    expect(bad('{ path: a, glob: "/data/*" }')).toMatch(/looks like a file path: use filePath/);
    expect(bad('{ path: a, filePath: "/data/../*" }')).toMatch(/not an absolute path in normal form/);
    expect(bad('{ path: a, present: false, equals: 1 }')).toMatch(/cannot be combined/);
    expect(bad('{ path: a, min: 5, max: 1 }')).toMatch(/min" is greater than max/);
    expect(bad('{ path: a, minLength: -1 }')).toMatch(/whole number/);
    expect(bad('{ path: a, nope: 1 }')).toMatch(/unknown field "spec\.rules\[\]\.mcp\.arguments\[\]\.nope"/);
  });

  it('requires tools beside arguments', () => {
    const text = `${SEGMENTS}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: p }
spec:
  from: { segments: [agents] }
  to: { segments: [tools] }
  rules: [ { mcp: { arguments: [ { path: a, equals: 1 } ] } } ]
  action: allow
`;
    expect(() => parsePolicyText(text, 'p.yaml')).toThrow(/p\.yaml:18:\d+: "spec\.rules\[\]\.mcp\.arguments" needs "tools"/);
  });
});

describe('filePathProblem', () => {
  it('accepts absolute paths in normal form only', () => {
    expect(filePathProblem('/data/a/b.txt')).toBeUndefined();
    expect(filePathProblem('/data/')).toBeUndefined();
    expect(filePathProblem('/data/.hidden')).toBeUndefined();
    expect(filePathProblem('/data/a/..')).toBe('a ".." segment');
  });
});
