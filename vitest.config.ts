import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globalSetup: ['test/support/global-setup.ts'],
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['test/services/**', 'node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration suites each open their own database; two workers match the two cores.
    pool: 'forks',
    maxWorkers: 2,
    // A worker runs its files in one process, so src/ is loaded once per worker rather than once
    // per file (a third of the CPU of the run). Suites share no state but the PGlite template.
    isolate: false,
  },
});
