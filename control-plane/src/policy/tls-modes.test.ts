import { parseSpiffeId } from '@airlock/common/spiffe';
import { AirlockError } from '@airlock/common/errors';
import { describe, expect, it } from 'vitest';
import { PolicyEngine, toHost, type DecisionInput } from './engine.ts';
import { parsePolicyText } from './load.ts';

const TD = 'airlock.test';
const AGENT = parseSpiffeId(`spiffe://${TD}/ns/agents/sa/planner`);

const SEGMENTS = `
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: agents }
spec: { selector: { namespace: agents } }
`;

function engineOf(policies: string): PolicyEngine {
  return new PolicyEngine(parsePolicyText(`${SEGMENTS}${policies}`, 'p.yaml'), TD, 1);
}

const policy = (name: string, to: string, extra = '', action = 'allow'): string => `---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: ${name} }
spec:
  from: { segments: [agents] }
  to: ${to}
${extra}  action: ${action}
`;

const call = (host: string, port: number, method: string, path: string): DecisionInput => ({ source: AGENT, destination: toHost(host), port, method, path });

describe('tls: inspect and originate', () => {
  const engine = engineOf(
    policy('llm', '{ hosts: [api.example.com], ports: [443], tls: inspect }', '  rules: [ { methods: [POST], paths: [/v1/chat/*] } ]\n') +
      policy('no-admin', '{ hosts: [api.example.com] }', '  rules: [ { paths: [/v1/admin/*] } ]\n', 'deny') +
      policy('docs', '{ hosts: [docs.example.com], ports: [80], tls: originate }', '  rules: [ { methods: [GET] } ]\n') +
      policy('search', '{ hosts: [search.example.com], ports: [443] }', '  rules: [ { methods: [GET], paths: [/q] } ]\n') +
      policy('blind', '{ hosts: [files.example.com], ports: [443] }') +
      policy('files-inspected', '{ hosts: [files.example.com], ports: [443], tls: inspect }', '  rules: [ { methods: [GET] } ]\n'),
  );

  it('a CONNECT to an inspected host:port is allowed for inspection; its rules are judged per request inside', () => {
    const d = engine.evaluate(call('api.example.com', 443, 'CONNECT', ''));
    expect(d).toMatchObject({ allow: true, policy: 'llm', rule: '*', tls: 'inspect' });
    expect(d.reason).toMatch(/tls: inspect.*each request inside is judged/);
    expect(engine.evaluate(call('api.example.com', 443, 'POST', '/v1/chat/completions'))).toMatchObject({ allow: true, policy: 'llm', rule: 'rules[0]', tls: 'inspect' });
    expect(engine.evaluate(call('api.example.com', 443, 'GET', '/v1/chat/completions'))).toMatchObject({ allow: false });
    expect(engine.evaluate(call('api.example.com', 443, 'POST', '/v1/admin/keys'))).toMatchObject({ allow: false, policy: 'no-admin' });
  });

  it('not on another port, and a denied call carries no mode', () => {
    const d = engine.evaluate(call('api.example.com', 8443, 'CONNECT', ''));
    expect(d.allow).toBe(false);
    expect(d.tls).toBeUndefined();
    expect(engine.evaluate(call('api.example.com', 443, 'DELETE', '/v1/chat/x')).tls).toBeUndefined();
  });

  it('originate: a plain request is allowed with the mode that sends it over TLS', () => {
    expect(engine.evaluate(call('docs.example.com', 80, 'GET', '/guide'))).toMatchObject({ allow: true, policy: 'docs', tls: 'originate' });
    expect(engine.evaluate(call('docs.example.com', 80, 'CONNECT', ''))).toMatchObject({ allow: true, tls: 'originate' });
  });

  it('a tunnel denied because the rules of the allowing policy cannot see inside says so', () => {
    const d = engine.evaluate(call('search.example.com', 443, 'CONNECT', ''));
    expect(d.allow).toBe(false);
    expect(d.reason).toMatch(/policy "search" allows this host only for the requests its rules name.*blind tunnel.*tls: inspect/);
    // Without rules that could have matched, no such hint.
    expect(engine.evaluate(call('other.example.com', 443, 'CONNECT', '')).reason).not.toMatch(/blind tunnel/);
  });

  it('a mode is never lowered by file order: an inspect policy beside a blind allow of the same host inspects', () => {
    const d = engine.evaluate(call('files.example.com', 443, 'CONNECT', ''));
    expect(d).toMatchObject({ allow: true, policy: 'blind', tls: 'inspect' });
    expect(engine.evaluate(call('files.example.com', 443, 'POST', '/upload'))).toMatchObject({ allow: true, policy: 'blind', tls: 'inspect' });
  });

  it('inspect outranks originate for the same host and port', () => {
    const both = engineOf(policy('a', '{ hosts: [x.example.com], tls: originate }') + policy('b', '{ hosts: [x.example.com], tls: inspect }'));
    expect(both.evaluate(call('x.example.com', 443, 'CONNECT', '')).tls).toBe('inspect');
  });

  it('an enforced deny of the whole host still refuses the CONNECT', () => {
    const denied = engineOf(policy('llm', '{ hosts: [api.example.com], tls: inspect }') + policy('off', '{ hosts: [api.example.com] }', '', 'deny'));
    expect(denied.evaluate(call('api.example.com', 443, 'CONNECT', ''))).toMatchObject({ allow: false, policy: 'off' });
  });
});

describe('tls: validation', () => {
  const problems = (text: string): string => {
    try {
      parsePolicyText(`${SEGMENTS}${text}`, 'p.yaml');
    } catch (err) {
      if (err instanceof AirlockError) return err.message;
      throw err;
    }
    return '';
  };

  it.each([
    ['an unknown mode', '{ hosts: [a.example.com], tls: terminate }', 'allow', /p\.yaml:\d+:\d+: "spec\.to\.tls" must be one of inspect, originate/],
    ['an empty mode', '{ hosts: [a.example.com], tls: }', 'allow', /p\.yaml:12:38: "spec\.to\.tls" must be one of inspect, originate/],
    ['to segments', '{ segments: [agents], tls: inspect }', 'allow', /p\.yaml:\d+:\d+: "spec\.to\.tls" is for policies to hosts/],
    ['on a deny', '{ hosts: [a.example.com], tls: inspect }', 'deny', /p\.yaml:\d+:\d+: "spec\.to\.tls" is for allow policies/],
    ['not a string', '{ hosts: [a.example.com], tls: [inspect] }', 'allow', /p\.yaml:\d+:\d+: "spec\.to\.tls" must be one of/],
  ])('%s is refused at file:line:col', (_name, to, action, message) => {
    expect(problems(policy('p', to, '', action))).toMatch(message);
  });

  it('the line and column point at the value', () => {
    expect(problems(policy('p', '{ hosts: [a.example.com], tls: INSPECT }'))).toContain('p.yaml:12:38: "spec.to.tls" must be one of inspect, originate');
  });
});
