import { describe, expect, it } from 'vitest';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { globToRegExp } from './glob.ts';
import { SegmentIndex } from './segment-index.ts';
import type { SegmentDoc } from './types.ts';

const seg = (name: string, namespace: string | undefined, serviceAccounts: string[]): SegmentDoc => ({ name, namespace, serviceAccounts, at: 'test:1' });
const id = (ns: string, sa: string) => parseSpiffeId(`spiffe://td/ns/${ns}/sa/${sa}`);

/** The obvious definition the index must agree with: test every selector. */
function reference(segments: readonly SegmentDoc[], ns: string, sa: string): string[] {
  return segments
    .filter((s) => globToRegExp(s.namespace ?? '*').test(ns) && s.serviceAccounts.some((g) => globToRegExp(g).test(sa)))
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
  ];
  const index = new SegmentIndex(segments);

  it.each([
    ['agents', 'planner', ['exact', 'any-ns', 'everything', 'two-sas']],
    ['other', 'planner', ['any-ns', 'everything']],
    ['agents', 'research-7', ['ns-glob-sa', 'everything']],
    ['team-x', 'chat-bot', ['all-globs', 'everything']],
    ['agents', 'payments', ['everything', 'two-sas']],
    ['agents', 'axb', ['everything']],
    ['agents', 'a.b', ['everything', 'dot-literal']],
  ])('%s/%s is in %j, in definition order', (ns, sa, expected) => {
    expect(index.segmentsOf(id(ns, sa))).toEqual(expected);
  });

  it('agrees with testing every selector, over many identities', () => {
    const namespaces = ['agents', 'other', 'team-a', 'team-b'];
    const accounts = ['planner', 'payments', 'research-1', 'x-bot', 'a.b', 'z'];
    for (const ns of namespaces) for (const sa of accounts) expect(index.segmentsOf(id(ns, sa))).toEqual(reference(segments, ns, sa));
  });
});
