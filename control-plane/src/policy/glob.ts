/** `*` globs (the only wildcard of the policy language) as anchored regular expressions. */
export function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\-]/g, '\\$&')).join('.*')}$`, 's');
}

/**
 * A compiled `*` glob: `*` matches any run of characters (newlines included). Tested with string
 * comparisons, not a regex: no allocation per test, and the usual shapes (`x`, `x*`, `*x`, `*`) are
 * one comparison. One class for every shape keeps the call sites monomorphic.
 */
export class Glob {
  readonly source: string;
  /** The literal parts between the stars; one part = no star. */
  readonly #parts: readonly string[];
  readonly #first: string;
  readonly #last: string;
  /** The fewest characters a match can have. */
  readonly #minLength: number;

  constructor(glob: string) {
    this.source = glob;
    this.#parts = glob.split('*');
    this.#first = this.#parts[0] ?? '';
    this.#last = this.#parts[this.#parts.length - 1] ?? '';
    this.#minLength = glob.length - (this.#parts.length - 1);
  }

  test(value: string): boolean {
    const parts = this.#parts;
    if (parts.length === 1) return value === this.#first;
    if (value.length < this.#minLength || !value.startsWith(this.#first) || !value.endsWith(this.#last)) return false;
    // Middle parts, leftmost first: taking each at its earliest place leaves the most room for the rest.
    let at = this.#first.length;
    const end = value.length - this.#last.length;
    for (let i = 1; i < parts.length - 1; i++) {
      const part = parts[i] ?? '';
      if (part === '') continue;
      const found = value.indexOf(part, at);
      if (found === -1 || found + part.length > end) return false;
      at = found + part.length;
    }
    return true;
  }
}
