import { describe, expect, it } from 'vitest';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { globToRegExp } from './glob.ts';
import { SegmentIndex } from './segment-index.ts';
import type { SegmentDoc } from './types.ts';

const seg = (name: string, namespace: string | undefined, serviceAccounts: string[], spiffeIds: string[] = [], labels: Record<string, string> = {}): SegmentDoc => ({ name, namespace, serviceAccounts, spiffeIds, labels, at: 'test:1' });
const id = (ns: string, sa: string) => parseSpiffeId(`spiffe://td/ns/${ns}/sa/${sa}`);

/** The obvious definition the index must agree with: test every selector. */
function reference(segments: readonly SegmentDoc[], ns: string, sa: string): string[] {
  return segments
    .filter((s) => s.spiffeIds.includes(`spiffe://td/ns/${ns}/sa/${sa}`) || (globToRegExp(s.namespace ?? '*').test(ns) && s.serviceAccounts.some((g) => globToRegExp(g).test(sa))))
    .map((s) => s.name);
}

describe('SegmentIndex', () => {
  const segments = [
    seg('exact', 'agents', ['planner']),
    seg('any-ns', undefined, ['planner']),
    seg('ns-glob-sa', 'agents', ['research-*']),
    seg('all-globs', 'team-*', ['*-bot']),
    seg('everything', undefined, ['*']),
    seg('two-sas', 'agents', ['planner', 'payments']),
    seg('dot-literal', 'agents', ['a.b']),
    seg('ids-only', undefined, [], ['spiffe://td/ns/other/sa/z', 'spiffe://td/ns/team-a/sa/planner']),
    seg('ids-and-globs', 'team-b', ['*-bot'], ['spiffe://td/ns/agents/sa/z']),
    seg('other-td', undefined, [], ['spiffe://elsewhere/ns/agents/sa/planner']),
    seg('sa-prefix', 'team-*', ['x-*', 'plan*']),
    seg('sa-prefix-any-ns', undefined, ['research-1*', 'pay*']),
  ];
  const index = new SegmentIndex(segments);

  it.each([
    ['agents', 'planner', ['exact', 'any-ns', 'everything', 'two-sas']],
    ['other', 'planner', ['any-ns', 'everything']],
    ['agents', 'research-7', ['ns-glob-sa', 'everything']],
    ['team-x', 'chat-bot', ['all-globs', 'everything']],
    ['agents', 'payments', ['everything', 'two-sas', 'sa-prefix-any-ns']],
    ['agents', 'axb', ['everything']],
    ['agents', 'a.b', ['everything', 'dot-literal']],
    ['other', 'z', ['everything', 'ids-only']],
    ['team-a', 'planner', ['any-ns', 'everything', 'ids-only', 'sa-prefix']],
    ['agents', 'z', ['everything', 'ids-and-globs']],
    ['team-b', 'x-bot', ['all-globs', 'everything', 'ids-and-globs', 'sa-prefix']],
  ])('%s/%s is in %j, in definition order', (ns, sa, expected) => {
    expect(index.segmentsOf(id(ns, sa))).toEqual(expected);
  });

  it('matches a listed SPIFFE ID exactly: not another trust domain, not a longer or shorter name', () => {
    const only = new SegmentIndex([seg('ids-only', undefined, [], ['spiffe://td/ns/agents/sa/bot'])]);
    expect(only.segmentsOf(id('agents', 'bot'))).toEqual(['ids-only']);
    expect(only.segmentsOf(parseSpiffeId('spiffe://other/ns/agents/sa/bot'))).toEqual([]);
    expect(only.segmentsOf(id('agents', 'bot2'))).toEqual([]);
    expect(only.segmentsOf(id('agents', 'bo'))).toEqual([]);
  });

  it('agrees with testing every selector, over many identities', () => {
    const namespaces = ['agents', 'other', 'team-a', 'team-b'];
    const accounts = ['planner', 'payments', 'research-1', 'research-10', 'research-2', 'x-bot', 'x-1', 'pa', 'pay', 'a.b', 'z'];
    for (const ns of namespaces) for (const sa of accounts) expect(index.segmentsOf(id(ns, sa))).toEqual(reference(segments, ns, sa));
  });
});

describe('SegmentIndex: label selectors', () => {
  const segments = [
    seg('research', undefined, ['*'], [], { team: 'research' }),
    seg('research-gold', undefined, ['*'], [], { team: 'research', tier: 'gold' }),
    seg('research-in-agents', 'agents', ['plan*'], [], { team: 'research' }),
    seg('k8s-prod', undefined, ['*'], [], { 'kubernetes.io/namespace': 'prod' }),
    seg('ids-or-ops', undefined, ['*'], ['spiffe://td/ns/x/sa/y'], { team: 'ops' }),
    seg('everything', undefined, ['*']),
  ];
  const index = new SegmentIndex(segments);

  it.each<[string, string, Record<string, string>, string[]]>([
    ['agents', 'planner', { team: 'research' }, ['research', 'research-in-agents', 'everything']],
    ['agents', 'planner', { team: 'research', tier: 'gold' }, ['research', 'research-gold', 'research-in-agents', 'everything']],
    ['agents', 'payments', { team: 'research' }, ['research', 'everything']],
    ['other', 'planner', { team: 'research' }, ['research', 'everything']],
    ['agents', 'planner', { tier: 'gold' }, ['everything']],
    ['agents', 'planner', { team: 'Research' }, ['everything']],
    ['agents', 'planner', {}, ['everything']],
    ['prod', 'api', { 'kubernetes.io/namespace': 'prod' }, ['k8s-prod', 'everything']],
    ['x', 'y', {}, ['ids-or-ops', 'everything']],
    ['x', 'z', { team: 'ops' }, ['ids-or-ops', 'everything']],
  ])('%s/%s with labels %j is in %j (every label must match)', (ns, sa, labels, expected) => {
    expect(index.segmentsOf(id(ns, sa), labels)).toEqual(expected);
  });

  it('needs labels only when some selector has them', () => {
    expect(index.usesLabels).toBe(true);
    expect(new SegmentIndex([seg('a', 'agents', ['*'])]).usesLabels).toBe(false);
  });
});

