// npm run test:services: the suites that need the real services (Postgres server, Redis,
// Kafka), plus the ledger and log suites again against the server. Nothing is skipped: a
// service that does not answer fails the run loudly.
import { defineConfig } from 'vitest/config';

process.env.DATABASE_URL ??= 'postgres://postgres@127.0.0.1:5432/test';
process.env.KAFKA_BROKERS ??= '127.0.0.1:9092';
process.env.REDIS_URL ??= 'redis://127.0.0.1:6379';
// The shared harness switches to the real services: the HTTP suites run again on them.
process.env.HONGBAO_TEST_SERVICES = '1';

export default defineConfig({
  test: {
    globalSetup: ['test/support/global-setup.ts'],
    include: [
      'test/services/**/*.test.ts',
      'test/integration/ledger.test.ts',
      'test/integration/event-log.test.ts',
      'test/integration/http-*.test.ts',
    ],
    testTimeout: 180_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Crash tests restart shared services (Kafka, Postgres): one file at a time.
    fileParallelism: false,
  },
});
