import { describe, expect, it } from 'vitest';
import { Glob, globToRegExp } from './glob.ts';

describe('Glob', () => {
  it.each<[string, string, boolean]>([
    ['search', 'search', true],
    ['search', 'searc', false],
    ['search', 'search2', false],
    ['search_*', 'search_', true],
    ['search_*', 'search_web', true],
    ['search_*', 'searchweb', false],
    ['*-bot', 'x-bot', true],
    ['*-bot', '-bot', true],
    ['*-bot', 'x-bots', false],
    ['*', '', true],
    ['a*a', 'a', false],
    ['a*a', 'aa', true],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'ac', false],
    ['a*b*c', 'a-c-b', false],
    ['a*bc*bc', 'abcbc', true],
    ['a*bc*bc', 'abc', false],
    ['v1.*', 'v1x2', false],
    ['delete_*', 'delete_\nall', true],
    ['delete_*', 'delete_\u2028all', true],
  ])('%j on %j: %s', (glob, value, expected) => {
    expect(new Glob(glob).test(value)).toBe(expected);
  });

  it('agrees with the regular expression, over many globs and values', () => {
    const alphabet = ['a', 'b', '*', '.', '\n'];
    let seed = 1;
    const pick = (): string => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return alphabet[(seed >>> 8) % alphabet.length] ?? 'a';
    };
    const word = (n: number): string => Array.from({ length: n }, pick).join('');
    for (let i = 0; i < 5000; i++) {
      const glob = word(1 + (i % 6));
      const value = word(i % 8).replaceAll('*', 'a');
      expect(new Glob(glob).test(value), `${JSON.stringify(glob)} on ${JSON.stringify(value)}`).toBe(globToRegExp(glob).test(value));
    }
  });
});
