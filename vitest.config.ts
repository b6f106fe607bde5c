import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['{common,control-plane,sidecar,cli}/src/**/*.test.ts', 'test/**/*.test.ts', 'bench/**/*.test.ts'],
    // e2e tests start real processes and bind real ports: give them room on a 2-core machine.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The JSON report is what .ci/run reads for its closing "N passed, N failed" line.
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results/vitest.json' },
    maxWorkers: 2,
  },
});
