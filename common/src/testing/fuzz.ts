import fc from 'fast-check';

/**
 * Property-based tests (`*.fuzz.test.ts`) run `runs` cases each in CI, a few seconds a file; set
 * AIRLOCK_FUZZ_RUNS (what `npm run fuzz` does) for a long run, and AIRLOCK_FUZZ_SEED to replay the
 * seed a failure printed.
 */
export function fuzzRuns(runs: number): number {
  const asked = Number(process.env.AIRLOCK_FUZZ_RUNS ?? '');
  return Number.isSafeInteger(asked) && asked > 0 ? asked : runs;
}

function parameters<Ts>(runs: number): fc.Parameters<Ts> {
  const seed = process.env.AIRLOCK_FUZZ_SEED;
  return seed !== undefined && Number.isSafeInteger(Number(seed)) ? { numRuns: fuzzRuns(runs), seed: Number(seed) } : { numRuns: fuzzRuns(runs) };
}

/** fc.assert with the run count above (and the seed, when one is given to replay a failure). */
export function fuzz<Ts>(property: fc.IProperty<Ts>, runs = 300): void {
  fc.assert(property, parameters<Ts>(runs));
}

/** The same for an asynchronous property. */
export async function fuzzAsync<Ts>(property: fc.IAsyncProperty<Ts>, runs = 100): Promise<void> {
  await fc.assert(property, parameters<Ts>(runs));
}
