// Crash tests on the real services (Kafka + Postgres server + Redis): the engine killed with
// SIGKILL, the ledger consumer killed mid-batch, the Kafka broker restarted and Postgres
// restarted, each in the middle of a crowd of opens. Nothing acknowledged is lost, no money
// is made, reconciliation is clean afterwards. On Kafka no database lock makes the engine the
// owner (its slots do), so a Postgres restart only delays activations and the ledger.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { CRASH_SECRET, runCrashScenario } from '../support/crash-scenario.js';
import { startServer, type ServerProcess } from '../support/process.js';
import { freshServerDatabase } from '../support/server-database.js';

const SERVICES = fileURLToPath(new URL('../../scripts/services.sh', import.meta.url));
/** Asynchronous on purpose: the crowd keeps opening while the service is down. */
const services = (command: string) => promisify(execFile)('bash', [SERVICES, command], { timeout: 180_000 });
const running: ServerProcess[] = [];
const cleanups: (() => Promise<void>)[] = [];

async function servicesEnv() {
  const server = await freshServerDatabase(process.env.DATABASE_URL!);
  cleanups.push(server.drop);
  const suffix = `${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6)}`;
  return {
    AUTH_SECRET: CRASH_SECRET,
    SEED_SECRET: 'crash-seed',
    DATABASE_URL: server.url,
    KAFKA_BROKERS: process.env.KAFKA_BROKERS!,
    KAFKA_TOPIC: `hongbao-crash-${suffix}`,
    KAFKA_PARTITIONS: '4',
    REDIS_URL: process.env.REDIS_URL!,
  };
}

async function start(env: Record<string, string>) {
  const server = await startServer(env, 120_000);
  running.push(server);
  return server;
}

afterEach(async (context) => {
  // A failed crash test shows what the servers said.
  if (context.task.result?.state === 'fail') for (const server of running) console.error(server.output().slice(-5000));
  await Promise.all(running.splice(0).map((server) => server.kill('SIGKILL')));
  for (const cleanup of cleanups.splice(0)) await cleanup().catch(() => {});
});

describe('crashes on Kafka + Postgres + Redis', () => {
  it('kill -9 of the engine mid-load loses nothing and makes no money', async () => {
    const env = await servicesEnv();
    let engine = await start(env);
    const report = await runCrashScenario({
      engine: () => engine,
      disrupt: async () => {
        await engine.kill('SIGKILL');
        engine = await start(env);
      },
    });
    expect(report.acknowledged).toBeGreaterThanOrEqual(100);
    expect(report.refusedWhileBroken).toBeGreaterThan(0);
  });

  it('kill -9 of the ledger consumer mid-batch: crediting resumes, nothing doubled', async () => {
    const env = await servicesEnv();
    const engine = await start({ ...env, ROLE: 'engine' });
    let ledger = await start({ ...env, ROLE: 'ledger' });
    const report = await runCrashScenario({
      engine: () => engine,
      disrupt: async () => {
        await ledger.kill('SIGKILL');
        await new Promise((resolve) => setTimeout(resolve, 500));
        ledger = await start({ ...env, ROLE: 'ledger' });
      },
    });
    expect(report.acknowledged).toBeGreaterThanOrEqual(100);
  });

  it('a Kafka broker restart mid-load: opens fail fast while it is down, nothing acknowledged is lost', async () => {
    const env = await servicesEnv();
    const engine = await start(env);
    const report = await runCrashScenario({
      engine: () => engine,
      disrupt: async () => {
        await services('restart-kafka');
      },
    });
    expect(report.acknowledged).toBeGreaterThanOrEqual(100);
    // While the broker was down, opens were refused (503), not queued and not claimed.
    expect(report.refusedWhileBroken).toBeGreaterThan(0);
  });

  it('a Postgres restart mid-load: the engine rides it out (on Kafka its slots, not a database lock, make it the owner), the books balance', async () => {
    const env = await servicesEnv();
    const engine = await start(env);
    const report = await runCrashScenario({
      engine: () => engine,
      disrupt: async () => {
        await services('restart-postgres');
      },
    });
    // No engine lock on Kafka: the process kept running and owning its slots throughout.
    expect(engine.child.exitCode).toBeNull();
    expect(engine.output()).not.toMatch(/engine lock/);
    expect(report.acknowledged).toBeGreaterThanOrEqual(100);
  });
});
