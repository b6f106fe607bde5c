import { AirlockError } from '@airlock/common/errors';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { createRegistry } from '@airlock/common/telemetry';
import { AuthorizeRequest, Direction, Verdict } from '@airlock/proto/authorization/v1';
import { describe, expect, it } from 'vitest';
import type { DecisionRecord, RefusalRecord } from '../audit/event.ts';
import { createControlPlaneMetrics } from '../monitoring/metrics.ts';
import type { AgentRecord } from '../store/store.ts';
import { Authorizer } from './authorize.ts';
import { PolicyEngine, toAgent, toHost, type DecisionInput } from '../policy/engine.ts';
import { parsePolicyText } from '../policy/load.ts';
import { decide } from './decide.ts';
import { DecisionState } from './decision-state.ts';
import { checkSecretFindings } from './secrets.ts';

const TD = 'airlock.test';
const AGENT = parseSpiffeId(`spiffe://${TD}/ns/agents/sa/planner`);
const PEER = parseSpiffeId(`spiffe://${TD}/ns/agents/sa/researcher`);

const SEGMENTS = `
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: agents }
spec: { selector: { namespace: agents } }
---
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: others }
spec: { selector: { namespace: others } }
`;

const policy = (name: string, to: string, action = 'allow', from = 'agents', mode = 'enforce'): string => `---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: ${name} }
spec:
  from: { segments: [${from}] }
  to: ${to}
  action: ${action}
  mode: ${mode}
`;

function decideOn(policies: string, input: DecisionInput) {
  const engine = new PolicyEngine(parsePolicyText(`${SEGMENTS}${policies}`, 'p.yaml'), TD, 1);
  return decide(new DecisionState(engine).current(), input).decision;
}

const AWS_IN_HEADER = [{ detector: 'aws-access-key@1', field: 'header:x-api-key' }];
const call = (host: string, findings = AWS_IN_HEADER, method = 'POST', path = '/v1/upload'): DecisionInput => ({ source: AGENT, destination: toHost(host), port: 80, method, path, ...(findings.length === 0 ? {} : { secretFindings: findings }) });

describe('spec.to.secrets', () => {
  const policies =
    policy('upload', '{ hosts: [upload.example], secrets: { block: [aws-access-key, private-key], pii: [credit-card] } }') +
    policy('all-secrets', '{ hosts: [all.example], secrets: { block: all } }') +
    policy('plain', '{ hosts: [plain.example] }') +
    policy('tunnel', '{ hosts: [tls.example], ports: [443], secrets: { block: all } }') +
    policy('inspected', '{ hosts: [inspected.example], ports: [443], tls: inspect, secrets: { block: all } }') +
    policy('mesh', '{ segments: [agents] }') +
    // A broad allow first, the guard of one host below it: file order does not lift the guard.
    policy('broad', '{ hosts: ["*.guarded.example"] }') +
    policy('guarded', '{ hosts: [up.guarded.example], ports: [80], secrets: { block: [aws-access-key] } }') +
    policy('other-port', '{ hosts: [down.guarded.example], ports: [8443], secrets: { block: all } }') +
    policy('others-only', '{ hosts: [plain.example], secrets: { block: all } }', 'allow', 'others') +
    policy('dry-deny', '{ hosts: [up.guarded.example] }', 'deny', 'agents', 'dry-run');

  it('denies a request whose findings the allowing policy blocks, naming detector and field', () => {
    const d = decideOn(policies, call('upload.example'));
    expect(d.allow).toBe(false);
    expect(d.reason).toBe('secret_detected: aws-access-key@1 in header:x-api-key; policy "upload" blocks it to upload.example');
    expect(decideOn(policies, call('upload.example', [{ detector: 'credit-card@1', field: 'body' }])).reason).toMatch(/^secret_detected: credit-card@1 in body/);
    // Any version of a blocked detector counts (a newer sidecar's).
    expect(decideOn(policies, call('upload.example', [{ detector: 'private-key@2', field: 'body' }])).allow).toBe(false);
    expect(decideOn(policies, call('all.example', [{ detector: 'jwt@1', field: 'header:authorization' }])).reason).toMatch(/^secret_detected: jwt@1 in header:authorization/);
  });

  it('lets through what the policy does not block, a clean request, and every request under a policy without secrets', () => {
    expect(decideOn(policies, call('upload.example', [{ detector: 'jwt@1', field: 'body' }])).allow).toBe(true);
    expect(decideOn(policies, call('upload.example', [])).allow).toBe(true);
    expect(decideOn(policies, call('plain.example')).allow).toBe(true);
    // `block: all` is secrets only; PII is chosen apart.
    expect(decideOn(policies, call('all.example', [{ detector: 'email@1', field: 'body' }])).allow).toBe(true);
  });

  it('applies every guard of the host, port and source, whichever policy allowed (file order, a dry-run deny)', () => {
    const d = decideOn(policies, call('up.guarded.example'));
    expect(d.allow).toBe(false);
    expect(d.reason).toBe('secret_detected: aws-access-key@1 in header:x-api-key; policy "guarded" blocks it to up.guarded.example');
    expect(decideOn(policies, call('UP.guarded.example.')).allow).toBe(false);
    // Not another host under the same suffix, not another port, not a guard of another segment's policy.
    expect(decideOn(policies, call('other.guarded.example')).allow).toBe(true);
    expect(decideOn(policies, call('down.guarded.example')).allow).toBe(true);
    expect(decideOn(policies, call('plain.example')).allow).toBe(true);
  });

  it('never judges findings on a mesh call', () => {
    const d = decideOn(policies, { source: AGENT, destination: toAgent(PEER), port: 80, method: 'POST', path: '/', secretFindings: AWS_IN_HEADER });
    expect(d.allow).toBe(true);
  });

  it('denies the blind tunnel a secrets policy would open, not an inspected one', () => {
    const blind = decideOn(policies, { ...call('tls.example', [], 'CONNECT', ''), port: 443 });
    expect(blind.allow).toBe(false);
    expect(blind.reason).toMatch(/^secrets_unscannable: policy "tunnel" blocks secrets to this host, and a CONNECT tunnel is blind/);
    expect(decideOn(policies, { ...call('inspected.example', [], 'CONNECT', ''), port: 443 }).allow).toBe(true);
  });

  it('is refused where it cannot apply or names what does not exist, each problem with its line', () => {
    const bad = (to: string, action = 'allow'): string => {
      try {
        parsePolicyText(`${SEGMENTS}${policy('p', to, action)}`, 'p.yaml');
      } catch (err) {
        if (err instanceof AirlockError) return err.message;
      }
      return 'accepted';
    };
    expect(bad('{ segments: [agents], secrets: { block: all } }')).toMatch(/p\.yaml:\d+:\d+: "spec.to.secrets" is for policies to hosts/);
    expect(bad('{ hosts: [a.example], secrets: { block: all } }', 'deny')).toMatch(/"spec.to.secrets" is for allow policies/);
    expect(bad('{ hosts: [a.example], secrets: { block: [aws-key] } }')).toMatch(/unknown detector "aws-key" \(known: private-key, aws-access-key/);
    expect(bad('{ hosts: [a.example], secrets: { block: [email] } }')).toMatch(/"spec.to.secrets.block": unknown detector "email"/);
    expect(bad('{ hosts: [a.example], secrets: { pii: some } }')).toMatch(/"spec.to.secrets.pii" must be a list of detectors or "all"/);
    expect(bad('{ hosts: [a.example], secrets: { block: all, warn: all } }')).toMatch(/unknown field "spec.to.secrets.warn"/);
    expect(bad('{ hosts: [a.example], secrets: { block: [] } }')).toMatch(/blocks nothing/);
    expect(bad('{ hosts: [a.example], secrets: all }')).toMatch(/must be a mapping/);
  });
});

describe('checkSecretFindings', () => {
  it('refuses findings past their bounds or not shaped as detectors give them', () => {
    expect(() => checkSecretFindings([{ detector: 'aws-access-key@1', field: 'header:x-api-key' }, { detector: 'jwt@1', field: 'body' }])).not.toThrow();
    expect(() => checkSecretFindings(Array.from({ length: 33 }, () => ({ detector: 'jwt@1', field: 'body' })))).toThrow(/more than 32/);
    expect(() => checkSecretFindings([{ detector: 'AKIAIOSFODNN7EXAMPLE', field: 'body' }])).toThrow(/id@version/);
    expect(() => checkSecretFindings([{ detector: 'jwt@1', field: 'header:x: y' }])).toThrow(/field/);
    expect(() => checkSecretFindings([{ detector: 'jwt@1', field: 'query' }])).toThrow(/field/);
  });
});

describe('Authorize with secret findings', () => {
  const engine = new PolicyEngine(parsePolicyText(`${SEGMENTS}${policy('up', '{ hosts: [up.example], secrets: { block: all } }')}${policy('mesh', '{ segments: [agents] }')}`, 'p.yaml'), TD, 1);
  const agents = new Map<string, AgentRecord>([[PEER.uri, { spiffeId: PEER.uri, inboundAddress: '127.0.0.1:9', updatedAt: 1 }]]);
  const decisions: DecisionRecord[] = [];
  const refusals: RefusalRecord[] = [];
  const authorizer = new Authorizer({
    trustDomain: TD,
    decisions: () => ({ engine, agents, revoked: new Set<string>(), quarantined: new Map() }),
    metrics: createControlPlaneMetrics(createRegistry('test')),
    audit: { decision: (r) => decisions.push(r), refusal: (r) => refusals.push(r), admin: () => undefined, anomaly: () => undefined, accepting: () => true },
  });
  const ask = (host: string, findings: { detector: string; field: string }[]) =>
    authorizer.authorize(AGENT, AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: AGENT.uri, destinationHost: host, destinationPort: 80, method: 'GET', path: '/', secretFindings: findings }));
  const JWT_FOUND = [{ detector: 'jwt@1', field: 'header:authorization' }];

  it('denies and audits the findings (names only) of a call to an external host', () => {
    const res = ask('up.example', JWT_FOUND);
    expect(res.verdict).toBe(Verdict.VERDICT_DENY);
    expect(res.reason).toMatch(/^secret_detected: jwt@1 in header:authorization/);
    expect(decisions.at(-1)).toMatchObject({ verdict: 'deny', secrets: JWT_FOUND });
  });

  it('neither judges nor audits findings on a call to an agent of the mesh (agents pass each other tokens)', () => {
    const res = ask('researcher.agents', JWT_FOUND);
    expect(res.verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(decisions.at(-1)).toMatchObject({ verdict: 'allow', destination: PEER.uri });
    expect(decisions.at(-1)).not.toHaveProperty('secrets');
  });

  it('refuses findings over their bounds before deciding', () => {
    expect(() => ask('up.example', [{ detector: 'jwt@1', field: 'header:a b' }])).toThrow(/field/);
    expect(refusals.at(-1)).toMatchObject({ reasonCode: 'bad_request' });
  });
});
