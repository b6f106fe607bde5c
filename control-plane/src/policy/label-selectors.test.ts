import { parseSpiffeId } from '@airlock/common/spiffe';
import { AirlockError } from '@airlock/common/errors';
import { describe, expect, it } from 'vitest';
import { PolicyEngine, toAgent } from './engine.ts';
import { parsePolicyText } from './load.ts';

const TD = 'airlock.test';
const A = parseSpiffeId(`spiffe://${TD}/ns/agents/sa/a`);
const API = parseSpiffeId(`spiffe://${TD}/ns/tools/sa/api`);

const POLICY = `
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: research }
spec: { selector: { labels: { team: research, "example.com/tier": gold } } }
---
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: prod-tools }
spec: { selector: { labels: { kubernetes.io/namespace: prod } } }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: research-to-prod }
spec:
  from: { segments: [research] }
  to: { segments: [prod-tools] }
  action: allow
`;

describe('label selectors in decisions', () => {
  const engine = new PolicyEngine(parsePolicyText(POLICY, 'p.yaml'), TD, 1);
  const decide = (sourceLabels: Record<string, string>, destinationLabels: Record<string, string>) =>
    engine.evaluate({ source: A, destination: toAgent(API, destinationLabels), sourceLabels, port: 80, method: 'GET', path: '/' });

  it.each<[string, Record<string, string>, Record<string, string>, boolean]>([
    ['both sides match', { team: 'research', 'example.com/tier': 'gold' }, { 'kubernetes.io/namespace': 'prod' }, true],
    ['extra labels do not matter', { team: 'research', 'example.com/tier': 'gold', x: 'y' }, { 'kubernetes.io/namespace': 'prod' }, true],
    ['one label of the source missing', { team: 'research' }, { 'kubernetes.io/namespace': 'prod' }, false],
    ['a source label with another value', { team: 'ops', 'example.com/tier': 'gold' }, { 'kubernetes.io/namespace': 'prod' }, false],
    ['the destination not labelled', { team: 'research', 'example.com/tier': 'gold' }, {}, false],
    ['no labels at all', {}, {}, false],
  ])('%s', (_why, source, destination, allow) => {
    expect(decide(source, destination).allow).toBe(allow);
  });

  it('says it needs labels', () => {
    expect(engine.usesLabels).toBe(true);
  });
});

const segment = (selector: string): string => `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: s }\nspec:\n  selector: ${selector}\n`;

describe('label selectors: validation', () => {
  it.each([
    ['{ labels: { team: research, colour: [red] } }', 'p.yaml:5:49: "spec.selector.labels": the value of "colour" must be a string'],
    ['{ labels: { team: 1 } }', 'the value of "team" must be a string (quote numbers and booleans)'],
    ['{ labels: { "bad key": x } }', 'label key "bad key"'],
    ['{ labels: { team: "two words" } }', 'label value "two words"'],
    ['{ labels: {} }', '"spec.selector.labels" must be a mapping of label keys to values, with at least one label'],
    ['{ labels: [team] }', '"spec.selector.labels" must be a mapping'],
    ['{ label: { team: x } }', 'unknown field "spec.selector.label" (known: namespace, serviceAccounts, spiffeIds, labels)'],
  ])('%s', (selector, message) => {
    let err: unknown;
    try {
      parsePolicyText(segment(selector), 'p.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AirlockError);
    expect((err as Error).message).toContain(message);
    expect((err as Error).message).toMatch(/p\.yaml:\d+:\d+: /);
  });

  it('labels alone select any namespace and service account; with them, all must hold', () => {
    expect(parsePolicyText(segment('{ labels: { team: research } }'), 'p.yaml').segments[0]).toMatchObject({ namespace: undefined, serviceAccounts: ['*'], labels: { team: 'research' } });
    expect(parsePolicyText(segment('{ namespace: agents, labels: { team: "1" } }'), 'p.yaml').segments[0]).toMatchObject({ namespace: 'agents', serviceAccounts: ['*'], labels: { team: '1' } });
  });
});
