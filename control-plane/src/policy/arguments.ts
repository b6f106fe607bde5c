import { RE2JS } from 're2js';
import { Glob } from './glob.ts';
import type { ArgumentRuleDoc, ArgumentScalar } from './types.ts';

/** `amount`, `to.account`, `items[0].id`: keys (letters, digits, `_`, `-`) and array indexes. */
export const ARGUMENT_PATH = /^[A-Za-z_][A-Za-z0-9_-]{0,63}(\.[A-Za-z_][A-Za-z0-9_-]{0,63}|\[[0-9]{1,4}\]){0,7}$/;
/** Longer regexes are refused by validation: RE2 matches in linear time, and this bounds its program too. */
export const MAX_ARGUMENT_REGEX_LENGTH = 256;

/** One step of a path: an object key or an array index. */
type Step = string | number;

export function parseArgumentPath(path: string): Step[] {
  const steps: Step[] = [];
  for (const m of path.matchAll(/([A-Za-z_][A-Za-z0-9_-]*)|\[([0-9]+)\]/g)) steps.push(m[1] ?? Number(m[2]));
  return steps;
}

/** How a condition came out: held, did not hold, or could not be judged (a value of another type). */
export type ArgumentOutcome = 'holds' | 'fails' | 'unknown';

/**
 * A compiled argument condition. `test` sets `why` (for the reason and the audit line) when it
 * does not hold; the value is named only when the policy marks it loggable.
 */
export class ArgumentCondition {
  readonly path: string;
  readonly loggable: boolean;
  readonly #steps: readonly Step[];
  readonly #doc: ArgumentRuleDoc;
  readonly #glob: Glob | undefined;
  readonly #filePaths: readonly Glob[] | undefined;
  readonly #regex: RE2JS | undefined;
  /** Set by test when the condition does not hold or cannot be judged (evaluation is synchronous). */
  why = '';

  constructor(doc: ArgumentRuleDoc) {
    this.path = doc.path;
    this.loggable = doc.loggable;
    this.#steps = parseArgumentPath(doc.path);
    this.#doc = doc;
    this.#glob = doc.glob === undefined ? undefined : new Glob(doc.glob);
    this.#filePaths = doc.filePath?.map((g) => new Glob(g));
    this.#regex = doc.regex === undefined ? undefined : RE2JS.compile(doc.regex);
  }

  /** The argument's value at the path; undefined when absent. Own properties only (no `__proto__` or `constructor` from the prototype). */
  valueIn(args: Readonly<Record<string, unknown>>): unknown {
    let v: unknown = args;
    for (const step of this.#steps) {
      if (typeof step === 'number') {
        if (!Array.isArray(v) || step >= v.length) return undefined;
        v = v[step];
      } else {
        if (typeof v !== 'object' || v === null || Array.isArray(v) || !Object.hasOwn(v, step)) return undefined;
        v = (v as Record<string, unknown>)[step];
      }
    }
    return v;
  }

  test(args: Readonly<Record<string, unknown>>): ArgumentOutcome {
    const d = this.#doc;
    const v = this.valueIn(args);
    if (v === undefined) {
      if (d.present === false) return 'holds';
      return this.#fail('is not sent');
    }
    if (d.present === false) return this.#fail('is sent', v);
    if (d.equals !== undefined && v !== d.equals) return this.#fail(`is not ${JSON.stringify(d.equals)}`, v);
    if (d.oneOf !== undefined && !d.oneOf.includes(v as ArgumentScalar)) return this.#fail(`is not one of ${JSON.stringify(d.oneOf)}`, v);
    if (d.min !== undefined || d.max !== undefined) {
      // Past 2^53 a JSON number is rounded here and may be read exactly by the server: not judged.
      if (typeof v !== 'number' || !Number.isFinite(v) || Math.abs(v) > Number.MAX_SAFE_INTEGER) return this.#unknown(`is not a number within ±2^53 (it is ${typeName(v)})`);
      if (d.min !== undefined && v < d.min) return this.#fail(`is below the minimum ${d.min}`, v);
      if (d.max !== undefined && v > d.max) return this.#fail(`is above the maximum ${d.max}`, v);
    }
    if (this.#glob !== undefined || this.#regex !== undefined || this.#filePaths !== undefined || d.minLength !== undefined || d.maxLength !== undefined) {
      if (typeof v !== 'string') return this.#unknown(`is not a string (it is ${typeName(v)})`);
      if (d.minLength !== undefined || d.maxLength !== undefined) {
        const length = codePoints(v);
        if (d.minLength !== undefined && length < d.minLength) return this.#fail(`is shorter than ${d.minLength} characters`, v);
        if (d.maxLength !== undefined && length > d.maxLength) return this.#fail(`is longer than ${d.maxLength} characters`, v);
      }
      if (this.#glob !== undefined && !this.#glob.test(v)) return this.#fail(`does not match ${JSON.stringify(d.glob)}`, v);
      if (this.#filePaths !== undefined) {
        const problem = filePathProblem(v);
        // A path a server could resolve elsewhere (`/data/../etc`) is not judged, not normalized here.
        if (problem !== undefined) return this.#unknown(`is not a file path in normal form (${problem})`, v);
        if (!this.#filePaths.some((g) => g.test(v))) return this.#fail(`is not under ${JSON.stringify(d.filePath)}`, v);
      }
      if (this.#regex !== undefined && !this.#regex.matches(v)) return this.#fail(`does not match the regex ${JSON.stringify(d.regex)}`, v);
    }
    return 'holds';
  }

  /** The value as an audit line may show it. */
  shown(value: unknown): string {
    if (!this.loggable) return '[redacted]';
    const text = JSON.stringify(value);
    return text.length > 200 ? `${text.slice(0, 200)}…` : text;
  }

  #fail(what: string, value?: unknown): 'fails' {
    this.why = `argument "${this.path}"${value === undefined || !this.loggable ? '' : ` (${this.shown(value)})`} ${what}`;
    return 'fails';
  }

  #unknown(what: string, value?: unknown): 'unknown' {
    this.#fail(what, value);
    return 'unknown';
  }
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function codePoints(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

/**
 * Why a string is not an absolute file path in normal form, or undefined. Such a path is refused
 * rather than normalized: a server may resolve `..` after a symlink, decode `%2e%2e`, or read `\\`
 * as a separator, so no normal form judged here is certainly the file it opens.
 */
export function filePathProblem(p: string): string | undefined {
  if (!p.startsWith('/')) return 'not absolute';
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(p)) return 'a control character';
  if (p.includes('\\')) return 'a backslash';
  if (/%(2e|2f|5c|00)/i.test(p)) return 'a percent-encoded ".", "/", "\\" or NUL';
  const segments = p.split('/').slice(1);
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i];
    if (s === '.' || s === '..') return `a "${s}" segment`;
    if (s === '' && i < segments.length - 1) return 'an empty segment ("//")';
  }
  return undefined;
}
