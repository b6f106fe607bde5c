import { describe, expect, it } from 'vitest';
import { lineDiff, MAX_DIFF_CELLS } from './diff.ts';

describe('lineDiff', () => {
  it('aligns common lines of small documents', () => {
    expect(lineDiff(['a', 'b', 'c', 'd'], ['a', 'x', 'c', 'd', 'e'])).toEqual(['  a', '- b', '+ x', '  c', '  d', '+ e']);
  });

  it(`keeps its table within ${MAX_DIFF_CELLS} cells: a larger middle is shown removed, then added`, () => {
    // A viewer's diff against a large stored document must not allocate (n+1)·(m+1) cells.
    const n = 3000;
    const a = ['head', ...Array.from({ length: n }, (_, i) => `a${i}`), 'common', 'tail'];
    const b = ['head', 'common', ...Array.from({ length: n }, (_, i) => `b${i}`), 'tail'];
    const out = lineDiff(a, b);
    expect(out[0]).toBe('  head');
    expect(out.at(-1)).toBe('  tail');
    expect(out.filter((l) => l.startsWith('- '))).toHaveLength(n + 1);
    expect(out.filter((l) => l.startsWith('+ '))).toHaveLength(n + 1);
    expect(out.slice(1, n + 2).every((l) => l.startsWith('- '))).toBe(true);
  });
});
