import { parseSpiffeId } from '@airlock/common/spiffe';
import { describe, expect, it } from 'vitest';
import { PolicyEngine, toAgent } from './engine.ts';
import { parsePolicyText } from './load.ts';

const TD = 'airlock.test';
const AGENT = parseSpiffeId(`spiffe://${TD}/ns/agents/sa/planner`);
const TOOLS = parseSpiffeId(`spiffe://${TD}/ns/tools/sa/mcp`);
const SEGMENTS = `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: agents }\nspec: { selector: { namespace: agents } }\n---\napiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: tools }\nspec: { selector: { namespace: tools } }\n---\n`;

const policy = (rules: string, action = 'allow', mode = 'enforce'): string =>
  `${SEGMENTS}apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec:\n  from: { segments: [agents] }\n  to: { segments: [tools] }\n  rules:\n${rules}\n  action: ${action}\n  mode: ${mode}\n`;
const load = (text: string): PolicyEngine => new PolicyEngine(parsePolicyText(text, 'p.yaml'), TD);
const decide = (engine: PolicyEngine, method: string, tool = '') => engine.evaluate({ source: AGENT, destination: toAgent(TOOLS), port: 80, method: 'POST', path: '/mcp', mcp: { method, tool, arguments: { value: {} } } });

describe('approve: required in policy rules', () => {
  it('marks an allowed tools/call of the rule with its approver and timeout (defaults responder, 120s), and nothing else', () => {
    const engine = load(policy(`    - { mcp: { tools: [transfer] }, approve: required }\n    - { mcp: { tools: [wire] }, approve: required, approver: admin, approvalTimeout: 10m }\n    - { mcp: { methods: ['*'] } }`));
    expect(decide(engine, 'tools/call', 'transfer')).toMatchObject({ allow: true, approval: { role: 'responder', timeoutMs: 120_000 } });
    expect(decide(engine, 'tools/call', 'wire')).toMatchObject({ allow: true, approval: { role: 'admin', timeoutMs: 600_000 } });
    // initialize and tools/list pass the same rule (tools constrain tools/call only) and are not held.
    expect(decide(engine, 'initialize').approval).toBeUndefined();
    expect(decide(engine, 'tools/list').approval).toBeUndefined();
    expect(decide(engine, 'tools/call', 'balance').approval).toBeUndefined();
  });

  it('a dry-run deny does not lift the approval the allowing rule asks for', () => {
    const text = `${policy('    - { mcp: { tools: [transfer] }, approve: required }')}---\napiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: d }\nspec:\n  from: { segments: [agents] }\n  to: { segments: [tools] }\n  action: deny\n  mode: dry-run\n`;
    expect(decide(load(text), 'tools/call', 'transfer')).toMatchObject({ allow: true, dryRunDeny: true, approval: { role: 'responder' } });
  });

  it('refuses approve where it cannot bind one exact tool call, on a deny, or with bad values', () => {
    const problems = (rules: string, action = 'allow'): string => {
      try {
        load(policy(rules, action));
      } catch (err) {
        return (err as Error).message;
      }
      return 'accepted';
    };
    expect(problems('    - { paths: [/mcp], approve: required }')).toMatch(/"spec.rules\[\].approve" needs an "mcp" rule on tools\/call naming its tools/);
    expect(problems('    - { mcp: { methods: [tools/list], tools: [x] }, approve: required }')).toMatch(/needs an "mcp" rule on tools\/call/);
    expect(problems('    - { mcp: { methods: [tools/call] }, approve: required }')).toMatch(/needs an "mcp" rule on tools\/call naming its tools/);
    expect(problems('    - { mcp: { tools: [x] }, approve: required }', 'deny')).toMatch(/belongs to allow policies/);
    expect(problems('    - { mcp: { tools: [x] }, approve: yes }')).toMatch(/"spec.rules\[\].approve" must be "required"/);
    expect(problems('    - { mcp: { tools: [x] }, approve: true }')).toMatch(/must be "required"/);
    expect(problems('    - { mcp: { tools: [x] }, approve: required, approver: viewer }')).toMatch(/"spec.rules\[\].approver" must be one of responder, admin/);
    expect(problems('    - { mcp: { tools: [x] }, approve: required, approvalTimeout: 11m }')).toMatch(/approvalTimeout.*must be at most 600000ms/);
    expect(problems('    - { mcp: { tools: [x] }, approve: required, approvalTimeout: 500ms }')).toMatch(/approvalTimeout.*must be at least 1000ms/);
    expect(problems('    - { mcp: { tools: [x] }, approvalTimeout: 1m }')).toMatch(/go with "approve: required"/);
  });
});
