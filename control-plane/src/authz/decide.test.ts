import { parseSpiffeId } from '@airlock/common/spiffe';
import { describe, expect, it } from 'vitest';
import { PolicyEngine, toAgent, type DecisionInput } from '../policy/engine.ts';
import { parsePolicyText } from '../policy/load.ts';
import { decide } from './decide.ts';
import { DecisionState } from './decision-state.ts';

const TD = 'airlock.test';
const PLANNER = parseSpiffeId(`spiffe://${TD}/ns/agents/sa/planner`);
const TOOLS = parseSpiffeId(`spiffe://${TD}/ns/agents/sa/tools`);

const DOCS = `
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: agents }
spec: { selector: { namespace: agents } }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: search-only }
spec:
  from: { segments: [agents] }
  to: { segments: [agents] }
  rules: [ { methods: [POST], paths: [/mcp], mcp: { tools: [search] } } ]
  action: allow
`;

describe('decide', () => {
  const snapshot = new DecisionState(new PolicyEngine(parsePolicyText(DOCS, 'p.yaml'), TD, 1)).current();
  const call: DecisionInput = { source: PLANNER, destination: toAgent(TOOLS), port: 443, method: 'POST', path: '/mcp', mcp: { method: 'tools/call', tool: 'search' } };

  it('denies a call whose MCP headers contradict its body, whatever the policies say, in the one decision path', () => {
    expect(decide(snapshot, call).decision.allow).toBe(true);
    const d = decide(snapshot, { ...call, mcpHeaderMismatch: 'Mcp-Name says "delete", the body "search"' }).decision;
    expect(d.allow).toBe(false);
    expect(d.reason).toBe('the MCP request headers do not match its body: Mcp-Name says "delete", the body "search"');
  });
});
