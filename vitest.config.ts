import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // A temporary folder per run (TMPDIR), removed at the end: no test leaves files in the system's /tmp.
    globalSetup: ['test/support/run-tmpdir.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: forks keep PGlite/WASM and servers isolated per file.
    pool: 'forks',
    // In CI a JSON report as well, from which .ci/run prints the plain "N passed, N failed" closing line.
    reporters: process.env['CI']
      ? ['default', ['json', { outputFile: '.vitest-results.json' }]]
      : ['default'],
  },
});
