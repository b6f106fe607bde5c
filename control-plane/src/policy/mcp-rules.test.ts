import { parseSpiffeId } from '@airlock/common/spiffe';
import { describe, expect, it } from 'vitest';
import { AirlockError } from '@airlock/common/errors';
import { PolicyEngine, toAgent, toHost, type DecisionInput, type McpInput } from './engine.ts';
import { parsePolicyText } from './load.ts';

const TD = 'airlock.test';
const AGENT = parseSpiffeId(`spiffe://${TD}/ns/agents/sa/planner`);
const TOOLS = parseSpiffeId(`spiffe://${TD}/ns/tools/sa/mcp`);

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
metadata: { name: agents-to-mcp }
spec:
  from: { segments: [agents] }
  to: { segments: [tools] }
  rules:
    - { methods: [GET], paths: [/status] }
    - { methods: [POST], paths: [/mcp], mcp: { tools: ["search_*", "fetch"] } }
  action: allow
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: no-search-admin }
spec:
  from: { segments: [agents] }
  to: { segments: [tools] }
  rules: [ { paths: [/mcp], mcp: { tools: ["search_admin*"] } } ]
  action: deny
`;

const engine = new PolicyEngine(parsePolicyText(POLICY, 'p.yaml'), TD, 4);
const input = (mcp: McpInput | undefined, path = '/mcp'): DecisionInput => ({ source: AGENT, destination: toAgent(TOOLS), port: 80, method: 'POST', path, mcp });

describe('MCP rules', () => {
  it('allow tools/call of a listed tool, and the other methods of the protocol', () => {
    expect(engine.evaluate(input({ method: 'tools/call', tool: 'search_web' }))).toMatchObject({ allow: true, policy: 'agents-to-mcp', rule: 'rules[1]', version: 4 });
    expect(engine.evaluate(input({ method: 'tools/call', tool: 'fetch' }))).toMatchObject({ allow: true });
    expect(engine.evaluate(input({ method: 'initialize', tool: '' }))).toMatchObject({ allow: true });
    expect(engine.evaluate(input({ method: 'tools/list', tool: '' }))).toMatchObject({ allow: true });
  });

  it('deny a tool no rule names, and a tool a deny names (deny wins over the allow glob)', () => {
    expect(engine.evaluate(input({ method: 'tools/call', tool: 'delete_all' }))).toMatchObject({ allow: false, policy: '' });
    expect(engine.evaluate(input({ method: 'tools/call', tool: 'fetch_all' }))).toMatchObject({ allow: false });
    const d = engine.evaluate(input({ method: 'tools/call', tool: 'search_admin_users' }));
    expect(d).toMatchObject({ allow: false, policy: 'no-search-admin', rule: 'rules[0]' });
  });

  it('never allow an unreadable or missing body by a rule on MCP, and say why', () => {
    const d = engine.evaluate(input({ unreadable: 'the body is larger than 65536 bytes' }));
    expect(d.allow).toBe(false);
    // The deny on MCP matches an unreadable body (else an oversized body would slip past it).
    expect(d.policy).toBe('no-search-admin');
    expect(d.reason).toMatch(/not a readable MCP request \(the body is larger than 65536 bytes\)/);
    expect(engine.evaluate(input(undefined)).allow).toBe(false);
    // Requests the MCP rules do not cover are judged as before.
    expect(engine.evaluate({ ...input(undefined, '/status'), method: 'GET' })).toMatchObject({ allow: true, rule: 'rules[0]' });
  });

  it('names the tools a caller may call, for filtering tools/list', () => {
    expect(engine.callableTools(input({ method: 'tools/list', tool: '' }), ['search_web', 'delete_all', 'search_admin', 'fetch'])).toEqual(['search_web', 'fetch']);
  });

  it('filters tools/list exactly as a tools/call of each tool would be decided', () => {
    const rollout = new PolicyEngine(parsePolicyText(`${POLICY}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: trial-no-fetch }
spec:
  from: { segments: [agents] }
  to: { segments: [tools] }
  rules: [ { mcp: { tools: [fetch] } } ]
  action: deny
  mode: dry-run
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: trial-delete }
spec:
  from: { segments: [agents] }
  to: { segments: [tools], ports: [8080] }
  rules: [ { mcp: { tools: ["delete_*"] } } ]
  action: allow
  mode: dry-run
`, 'p.yaml'), TD, 5);
    const tools = ['search_web', 'delete_all', 'search_admin', 'fetch', 'other', 'search_'];
    const list = input({ method: 'tools/list', tool: '' });
    for (const call of [list, { ...list, port: 8080 }, { ...list, path: '/status' }, { ...list, destination: toHost('elsewhere.example') }, { ...list, destination: toHost('mcp.tools') }]) {
      const oneByOne = tools.filter((tool) => rollout.evaluate({ ...call, mcp: { method: 'tools/call', tool } }).allow);
      expect(rollout.callableTools(call, tools), JSON.stringify({ port: call.port, path: call.path, destination: call.destination })).toEqual(oneByOne);
    }
    // A dry-run "would deny" lets the call through, so the tool is listed.
    expect(rollout.callableTools(list, tools)).toEqual(['search_web', 'fetch', 'search_']);
    // Below a dry-run allow, the tools nothing allows are let through as "would deny" too; an enforced deny still wins.
    expect(rollout.callableTools({ ...list, port: 8080 }, tools)).toEqual(['search_web', 'delete_all', 'fetch', 'other', 'search_']);
    // No tool of a path no policy covers, nor of an ambiguous path.
    expect(rollout.callableTools({ ...list, path: '/other' }, tools)).toEqual([]);
    expect(rollout.callableTools({ ...list, path: '/v1/../mcp' }, tools)).toEqual([]);
  });

  it('rejects unknown fields and bad names under mcp', () => {
    const bad = POLICY.replace('mcp: { tools: ["search_*", "fetch"] }', 'mcp: { tool: ["x"], methods: ["tools call"] }');
    expect(() => parsePolicyText(bad, 'p.yaml')).toThrow(AirlockError);
    try {
      parsePolicyText(bad, 'p.yaml');
    } catch (err) {
      expect((err as Error).message).toMatch(/p\.yaml:\d+:\d+: unknown field "spec\.rules\[\]\.mcp\.tool"/);
      expect((err as Error).message).toMatch(/"tools call" is not a JSON-RPC method name/);
    }
  });

  it('reads onToolChange per MCP rule (alert | deny | quarantine), unset by default, and refuses another value', () => {
    const withChoice = (choice: string) => POLICY.replace('mcp: { tools: ["search_*", "fetch"] }', `mcp: { tools: ["search_*", "fetch"], onToolChange: ${choice} }`);
    for (const choice of ['alert', 'deny', 'quarantine'] as const) {
      expect(new PolicyEngine(parsePolicyText(withChoice(choice), 'p.yaml'), TD).onToolChange('agents-to-mcp', 'rules[1]')).toBe(choice);
    }
    const plain = new PolicyEngine(parsePolicyText(POLICY, 'p.yaml'), TD);
    expect(plain.onToolChange('agents-to-mcp', 'rules[1]')).toBeUndefined();
    expect(plain.onToolChange('agents-to-mcp', 'rules[0]')).toBeUndefined();
    expect(() => parsePolicyText(withChoice('ignore'), 'p.yaml')).toThrow(/"spec\.rules\[\]\.mcp\.onToolChange" must be one of alert, deny, quarantine/);
  });

  it('restricts JSON-RPC methods when a rule lists them', () => {
    const only = new PolicyEngine(parsePolicyText(POLICY.replace('mcp: { tools: ["search_*", "fetch"] }', 'mcp: { methods: [initialize, "tools/*"], tools: [fetch] }'), 'p.yaml'), TD, 1);
    expect(only.evaluate(input({ method: 'tools/list', tool: '' })).allow).toBe(true);
    expect(only.evaluate(input({ method: 'resources/read', tool: '' })).allow).toBe(false);
    expect(only.evaluate(input({ method: 'tools/call', tool: 'search_web' })).allow).toBe(false);
  });
});
