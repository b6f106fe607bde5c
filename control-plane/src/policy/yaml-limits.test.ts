import { describe, expect, it } from 'vitest';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { MAX_PROBLEMS, parsePolicyBundle, parsePolicyText } from './load.ts';
import { ADMIN_LIMITS } from './yaml-limits.ts';

/** The error a read throws (or undefined), as code and message. */
function refusal(read: () => unknown): { code: string; message: string } | undefined {
  try {
    read();
    return undefined;
  } catch (err) {
    if (!(err instanceof AirlockError)) throw err;
    return { code: err.code, message: err.message };
  }
}

const SEGMENT = 'apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: s }\nspec: { selector: { namespace: x } }\n';

describe('policy YAML limits', () => {
  // Files, `airlock validate` and the admin API alike: `yaml` composed recursively and reported a
  // stack overflow as "Maximum call stack size exceeded" at some position.
  it.each([
    ['flow sequences', '['.repeat(10_000), 'p.yaml:1:65'],
    ['flow mappings', '{a: '.repeat(10_000), 'p.yaml:1:257'],
    ['compact block sequences', '- '.repeat(10_000), 'p.yaml:1:129'],
    ['indented block sequences', Array.from({ length: 200 }, (_, i) => `${' '.repeat(i)}-`).join('\n'), 'p.yaml:65:65'],
    ['block mappings', Array.from({ length: 200 }, (_, i) => `${' '.repeat(i)}k:`).join('\n'), 'p.yaml:65:66'],
  ])('refuses %s nested deeper than 64 levels, with the position and the limit', (_name, text, at) => {
    for (const read of [() => parsePolicyText(text, 'p.yaml'), () => parsePolicyBundle(text, 'p.yaml'), () => parsePolicyBundle(text, 'p.yaml', new Set(), ADMIN_LIMITS)]) {
      const r = refusal(read);
      expect(r).toEqual({ code: ErrorCode.TooLarge, message: `invalid policy:\n  - ${at}: more than 64 levels of nesting (the limit)` });
    }
  });

  it('reads 64 levels of nesting as YAML (then refuses it as a policy, not as too deep)', () => {
    const r = refusal(() => parsePolicyText(`${'['.repeat(64)}${']'.repeat(64)}`, 'p.yaml'));
    expect(r?.code).toBe(ErrorCode.Policy);
  });

  it('refuses a mapping of more than 64 keys before `yaml` compares them pairwise', () => {
    const text = Array.from({ length: 100_000 }, (_, i) => `k${i}: v`).join('\n');
    expect(refusal(() => parsePolicyText(text, 'p.yaml'))).toEqual({ code: ErrorCode.TooLarge, message: 'invalid policy:\n  - p.yaml:65:1: a mapping with more than 64 keys (the limit)' });
    const flow = `{${Array.from({ length: 100 }, (_, i) => `k${i}: v`).join(', ')}}`;
    expect(refusal(() => parsePolicyText(flow, 'p.yaml'))?.message).toMatch(/p\.yaml:1:\d+: a mapping with more than 64 keys \(the limit\)/);
  });

  it('reads a flow mapping of exactly 64 keys closed on an indented line as within the limit', () => {
    // Found by fast-yaml.fuzz.test.ts: the indentation before `}` was counted as one more key.
    const flow = `spec:\n  selector: {\n${Array.from({ length: 64 }, (_, i) => `    k${i}: v`).join(',\n')}\n  }\n`;
    expect(refusal(() => parsePolicyText(flow, 'p.yaml'))?.code).toBe(ErrorCode.Policy);
    expect(refusal(() => parsePolicyBundle(flow, 'p.yaml'))?.code).toBe(ErrorCode.Policy);
    expect(refusal(() => parsePolicyText(flow.replace('k63: v', 'k63: v,\n    k64: v'), 'p.yaml'))?.code).toBe(ErrorCode.TooLarge);
  });

  describe('an admin request', () => {
    const admin = (text: string): ReturnType<typeof refusal> => refusal(() => parsePolicyBundle(text, 'request', new Set(), ADMIN_LIMITS));

    it('is refused over 10,000 documents, at the first one over, before any is read', () => {
      expect(admin('---\n'.repeat(262_144))).toEqual({ code: ErrorCode.TooLarge, message: 'invalid policy:\n  - request:10001:1: more than 10000 documents (the limit)' });
      // Documents without markers between them do not exist; `...` ends one as `---` starts one.
      expect(admin('...\n'.repeat(20_000))?.message).toContain('more than 10000 documents (the limit)');
      // At the limit, the documents are read (and judged as policy).
      expect(admin('---\n'.repeat(10_000))?.code).toBe(ErrorCode.Policy);
    });

    it('is refused over 200,000 YAML nodes', () => {
      expect(admin(`[${'a,'.repeat(300_000)}]`)).toEqual({ code: ErrorCode.TooLarge, message: 'invalid policy:\n  - request:1:400000: more than 200000 YAML nodes (the limit)' });
      expect(admin('- a\n'.repeat(200_000))?.message).toMatch(/^invalid policy:\n {2}- request:100001:1: more than 200000 YAML nodes \(the limit\)$/);
      // A file has no such limit.
      expect(refusal(() => parsePolicyText(`[${'a,'.repeat(300_000)}]`, 'p.yaml'))?.code).toBe(ErrorCode.Policy);
    });

    it('is refused over 64 aliases', () => {
      expect(admin(`a: &a x\nb: [${'*a, '.repeat(1000)}]\n`)).toEqual({ code: ErrorCode.TooLarge, message: `invalid policy:\n  - request:2:${5 + 64 * 4}: more than 64 aliases (the limit)` });
      expect(admin(`a: &a x\nb: [${'*a, '.repeat(64)}]\n`)?.code).toBe(ErrorCode.Policy);
    });

    it('reads a valid bundle within the limits', () => {
      expect(parsePolicyBundle(SEGMENT, 'request', new Set(), ADMIN_LIMITS).entries.map((e) => e.name)).toEqual(['s']);
    });
  });

  it(`lists at most ${MAX_PROBLEMS} problems, then how many more`, () => {
    const text = 'a: b\n---\n'.repeat(500);
    for (const read of [() => parsePolicyText(text, 'p.yaml'), () => parsePolicyBundle(text, 'p.yaml')]) {
      const lines = refusal(read)?.message.split('\n') ?? [];
      expect(lines.length).toBe(1 + MAX_PROBLEMS + 1);
      expect(lines.at(-1)).toMatch(/^ {2}… and 2\d{3} more$/);
    }
  });
});
