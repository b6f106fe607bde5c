import { fuzz } from '@airlock/common/testing/fuzz';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Glob, globToRegExp } from './glob.ts';

// The reference for the string-comparison matcher is the anchored regular expression of the same
// glob: on every value they must agree (policies match names, hosts and tools with Glob).

// Two letters are enough to overlap parts (the cases a matcher gets wrong); the rest are what names hold.
const glob = fc.oneof(fc.stringMatching(/^[ab*]{0,7}$/), fc.array(fc.constantFrom('a', 'b', 'ab', '*', '**', '.', '-', '_', '/', '\n'), { maxLength: 6 }).map((p) => p.join('')));
const value = fc.oneof(fc.stringMatching(/^[ab]{0,7}$/), fc.array(fc.constantFrom('a', 'b', 'ab', 'ba', '.', '-', '_', '/', '\n', '*'), { maxLength: 8 }).map((p) => p.join('')));

describe('Glob (fuzz)', () => {
  it('matches exactly what its regular expression matches', () => {
    fuzz(fc.property(glob, value, (g, v) => {
      expect(new Glob(g).test(v)).toBe(globToRegExp(g).test(v));
    }), 3000);
  });

  it('matches every value made by filling its stars', () => {
    fuzz(fc.property(glob, fc.array(value, { minLength: 6, maxLength: 6 }), (g, fills) => {
      const parts = g.split('*');
      const v = parts.map((p, i) => (i < parts.length - 1 ? p + (fills[i % fills.length] ?? '') : p)).join('');
      expect(new Glob(g).test(v)).toBe(true);
    }), 2000);
  });
});
