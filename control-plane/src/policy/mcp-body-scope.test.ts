import { parseSpiffeId } from '@airlock/common/spiffe';
import { describe, expect, it } from 'vitest';
import { PolicyEngine, toAgent, toHost } from './engine.ts';
import { parsePolicyText } from './load.ts';
import { scopeNeeds } from './mcp-body-scope.ts';

const TD = 'airlock.test';
const TOOLS = `spiffe://${TD}/ns/tools/sa/mcp`;
const OTHER = `spiffe://${TD}/ns/tools/sa/other`;

const SEGMENTS = `
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: agents }
spec: { selector: { namespace: agents } }
---
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: mcp-server }
spec: { selector: { spiffeIds: ["${TOOLS}"] } }
---
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: tools }
spec: { selector: { namespace: tools } }
`;

function policy(name: string, to: string, rules: string, action = 'allow'): string {
  return `---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: ${name} }
spec:
  from: { segments: [agents] }
  to: ${to}
  rules:
${rules}
  action: ${action}
`;
}

const engineOf = (docs: string) => new PolicyEngine(parsePolicyText(SEGMENTS + docs, 'p.yaml'), TD, 7);
const scopeOf = (docs: string) => engineOf(docs).mcpBody;
/** As the control plane checks a skipped body: segments chosen by pattern are looked up per agent. */
const needs = (docs: string, to: Parameters<typeof scopeNeeds>[1]): boolean => {
  const engine = engineOf(docs);
  return scopeNeeds(engine.mcpBody, to, (id, labels) => engine.segmentsOf(id, labels));
};

describe('the MCP body scope derived from a policy version', () => {
  it('is empty for a policy without rules on MCP (paths, methods, headers only)', () => {
    const docs = policy('plain', '{ segments: [tools] }', '    - { methods: [POST], paths: [/mcp] }\n    - { headers: [ { name: x-a, present: true } ] }') + policy('web', '{ hosts: ["api.example.com", "*.example.org"] }', '    - { methods: [GET] }');
    const scope = scopeOf(docs);
    expect(scope).toMatchObject({ version: 7, all: false, allAgents: false });
    expect([...scope.agents]).toEqual([]);
    expect([...scope.hosts]).toEqual([]);
    expect(scope.hostSuffixes).toEqual([]);
    expect(needs(docs, toAgent(parseSpiffeId(TOOLS)))).toBe(false);
    expect(needs(docs, toHost('api.example.com'))).toBe(false);
  });

  it('names a mesh agent (a segment of exact SPIFFE IDs) by its ID and its mesh host', () => {
    const docs = policy('deny-delete', '{ segments: [mcp-server] }', '    - { mcp: { tools: [delete_*] } }', 'deny');
    const scope = scopeOf(docs);
    expect(scope.allAgents).toBe(false);
    expect([...scope.agents]).toEqual([TOOLS]);
    expect([...scope.hosts]).toEqual(['mcp.tools']);
    expect(needs(docs, toAgent(parseSpiffeId(TOOLS)))).toBe(true);
    expect(needs(docs, toAgent(parseSpiffeId(OTHER)))).toBe(false);
  });

  it('names an external host exactly, and a wildcard host by its suffix', () => {
    const docs = policy('ext', '{ hosts: ["mcp.example.com", "*.tools.example.net"] }', '    - { mcp: { methods: ["tools/*"] } }');
    const scope = scopeOf(docs);
    expect([...scope.hosts]).toEqual(['mcp.example.com']);
    expect(scope.hostSuffixes).toEqual(['.tools.example.net']);
    expect(needs(docs, toHost('mcp.example.com.'))).toBe(true);
    expect(needs(docs, toHost('a.b.tools.example.net'))).toBe(true);
    expect(needs(docs, toHost('tools.example.net'))).toBe(false);
    expect(needs(docs, toHost('other.example.com'))).toBe(false);
    expect(needs(docs, toAgent(parseSpiffeId(TOOLS)))).toBe(false);
  });

  it('names a segment chosen by namespace (its members are found per agent, labels too), dry-run included', () => {
    const docs = policy('args', '{ segments: [tools] }', '    - { mcp: { tools: [pay], arguments: [ { path: amount, max: 10 } ] } }').replace('action: allow', 'action: allow\n  mode: dry-run');
    const scope = scopeOf(docs);
    expect(scope.allAgents).toBe(false);
    expect([...scope.segments]).toEqual(['tools']);
    expect(needs(docs, toAgent(parseSpiffeId(OTHER)))).toBe(true);
    expect(needs(docs, toAgent(parseSpiffeId(`spiffe://${TD}/ns/agents/sa/planner`)))).toBe(false);
    expect(needs(docs, toHost('api.example.com'))).toBe(false);
  });

  it('covers every destination while a Baseline learns (its flows name MCP tools)', () => {
    const docs = `${policy('plain', '{ segments: [tools] }', '    - { methods: [POST] }')}---
apiVersion: airlock.dev/v1
kind: Baseline
metadata: { name: normal }
spec: { from: { segments: [agents] }, learn: 10s, response: alert }
`;
    expect(scopeOf(docs).all).toBe(true);
    expect(needs(docs, toHost('api.example.com'))).toBe(true);
  });
});
