import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderConfigDocs } from '../scripts/config-docs.ts';

describe('README.md', () => {
  it('holds the config reference generated from the config definitions', () => {
    const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');
    // When this fails: run `node scripts/config-docs.ts` and commit README.md.
    expect(readme).toBe(renderConfigDocs(readme));
  });
});
