// kill -9 in the middle of webhook delivery, on the real services (a fresh Postgres database, a
// fresh Kafka topic — the notifier reads it in its own consumer group — and Redis): one endpoint
// answering 500, one holding every request; the engine process is killed, the database is read
// to prove the fault (retries scheduled, deliveries leased, nothing delivered), and the engine is
// started again on the same database and topic. Every event of the scenario then reaches both
// endpoints, in order per packet, signed (test/support/notification-crash.ts).
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/ledger/database.js';
import { crashMidDelivery, NOTIFY_CRASH_ENV, type NotificationCrashWorld } from '../support/notification-crash.js';
import { startServer, type ServerProcess } from '../support/process.js';
import { freshServerDatabase } from '../support/server-database.js';

const cleanups: (() => Promise<void>)[] = [];
const started: ServerProcess[] = [];

afterEach(async (context) => {
  if (context.task.result?.state === 'fail') for (const server of started) console.error(server.output().slice(-5000));
  started.length = 0;
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

describe('kill -9 mid-delivery, on Kafka + Postgres + Redis', () => {
  it('loses no event: after the restart every event reaches both endpoints, in order per packet, signed', async () => {
    const server = await freshServerDatabase(process.env.DATABASE_URL!);
    cleanups.push(server.drop);
    const env = {
      ...NOTIFY_CRASH_ENV,
      DATABASE_URL: server.url,
      KAFKA_BROKERS: process.env.KAFKA_BROKERS!,
      KAFKA_TOPIC: `hongbao-notification-crash-${Date.now().toString(36)}${randomBytes(2).toString('hex')}`,
      KAFKA_PARTITIONS: '2',
      REDIS_URL: process.env.REDIS_URL!,
    };
    let engine: ServerProcess | undefined;
    const start = async () => {
      engine = await startServer(env, 120_000);
      started.push(engine);
    };
    cleanups.push(async () => void (await engine?.kill('SIGKILL')));
    await start();
    let url = engine!.url;
    // The auditor's own connection: Postgres is read alongside (and after the death of) the engine.
    const database = await openDatabase({ url: server.url, dataDir: 'memory' });
    cleanups.push(() => database.close());
    const world: NotificationCrashWorld = {
      engineUrl: () => url,
      async crash() {
        const victim = engine!;
        engine = undefined;
        await victim.kill('SIGKILL');
        expect(victim.child.signalCode).toBe('SIGKILL');
      },
      async restart() {
        await start();
        url = engine!.url;
      },
      inspect: (read) => read(database.db),
    };
    const report = await crashMidDelivery(world);
    console.log(`services notification crash: ${JSON.stringify(report)}`);
    expect(report.expectedEvents).toBe(3 * 10 + 5);
  }, 150_000);
});
