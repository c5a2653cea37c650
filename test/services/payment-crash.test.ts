// kill -9 in the middle of a provider payment, on the real services (a fresh Postgres database, a
// fresh Kafka topic, Redis): between the return and the notification, and between the
// notification and the crediting. The sandbox provider runs in this process, so its retries
// outlive the engine. The second window is made deterministic: the ledger runs in its own process
// (ROLE=ledger) and is SIGSTOPped before the notification, so nothing can credit the held claims
// between the 200 and the kill -9 of every process. Each test proves its fault happened from the
// durable state while everything is down — Postgres for the ledger, the Kafka topic for the log —
// and afterwards that every held claim is credited exactly once and the books reconcile
// (test/support/payment-crash.ts).
import { Kafka, logLevel } from 'kafkajs';
import { sql } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, rowsOf } from '../../src/ledger/database.js';
import type { PacketEvent } from '../../src/log/events.js';
import { scanKafka } from '../../src/log/kafka-scan.js';
import { CRASH_SECRET } from '../support/crash-scenario.js';
import {
  crashBetweenNotificationAndCrediting,
  crashBetweenReturnAndNotification,
  ENGINE_ENV,
  eventually,
  startOnPort,
  startOutsideSandbox,
  type PaymentCrashWorld,
} from '../support/payment-crash.js';
import { freePort, startServer, type ServerProcess } from '../support/process.js';
import { freshServerDatabase } from '../support/server-database.js';

const cleanups: (() => Promise<void>)[] = [];
/** Every process of the test, killed ones included: what they said is shown if it fails. */
const started: ServerProcess[] = [];

afterEach(async (context) => {
  if (context.task.result?.state === 'fail') for (const server of started) console.error(server.output().slice(-5000));
  started.length = 0;
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

/**
 * The system on a fresh database and topic: one ROLE=all process, or (`split`) a ROLE=engine and
 * a ROLE=ledger process. The engine keeps its port across restarts: the orders' notify URL.
 */
async function servicesWorld(name: string, options: { split: boolean; delayedNotifyMs?: number }): Promise<PaymentCrashWorld> {
  const sandbox = await startOutsideSandbox(options);
  cleanups.push(() => sandbox.close());
  const server = await freshServerDatabase(process.env.DATABASE_URL!);
  cleanups.push(server.drop);
  const suffix = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;
  const topic = `hongbao-payment-crash-${name}-${suffix}`;
  const env = {
    AUTH_SECRET: CRASH_SECRET,
    SEED_SECRET: 'payment-crash-seed',
    DATABASE_URL: server.url,
    KAFKA_BROKERS: process.env.KAFKA_BROKERS!,
    KAFKA_TOPIC: topic,
    KAFKA_PARTITIONS: '2',
    REDIS_URL: process.env.REDIS_URL!,
    ...ENGINE_ENV,
    ...sandbox.env,
  };
  const port = await freePort();
  let engine: ServerProcess | undefined;
  let ledger: ServerProcess | undefined;
  const start = async () => {
    if (!options.split) {
      engine = await startOnPort(env, port);
      started.push(engine);
      return;
    }
    [ledger, engine] = await Promise.all([startServer({ ...env, ROLE: 'ledger' }, 120_000), startOnPort({ ...env, ROLE: 'engine' }, port)]);
    started.push(ledger, engine);
  };
  cleanups.push(async () => void (await Promise.all([engine?.kill('SIGKILL'), ledger?.kill('SIGKILL')])));
  await start();
  const url = engine!.url;

  // The auditor's own handles: the database, and the topic read from its start (a throwaway group).
  const database = await openDatabase({ url: server.url, dataDir: 'memory' });
  cleanups.push(() => database.close());
  const kafka = new Kafka({ clientId: `payment-crash-audit-${suffix}`, brokers: env.KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  cleanups.push(() => admin.disconnect());
  const packetEvents = async (packetId: string): Promise<PacketEvent[]> => {
    const heads = (await admin.fetchTopicOffsets(topic)).map((offset) => ({ partition: offset.partition, nextOffset: offset.high }));
    const found: PacketEvent[] = [];
    await scanKafka(
      {
        admin,
        topic,
        consumerOf: (groupId) => kafka.consumer({ groupId, readUncommitted: false, allowAutoTopicCreation: false, maxWaitTimeInMs: 100 }),
        groupIdPrefix: `payment-crash-audit-${suffix}`,
        onCleanupError: () => {},
      },
      heads,
      (events: readonly PacketEvent[]) => {
        for (const event of events) if (event.packetId === packetId) found.push(event);
      },
    );
    // One packet's events are in one partition, in log order.
    return found;
  };
  const state = { db: database.db, packetEvents };

  return {
    name,
    sandbox,
    engineUrl: () => url,
    async holdLedger() {
      expect(ledger, 'holding the ledger needs it in its own process').toBeDefined();
      // Straight to the child: ServerProcess.kill waits for an exit, which a stopped process never makes.
      expect(ledger!.child.kill('SIGSTOP')).toBe(true);
    },
    async crash() {
      const victims = [engine!, ...(ledger ? [ledger] : [])];
      engine = undefined;
      ledger = undefined;
      // The engine first: the moment the caller says. A stopped process dies of SIGKILL too.
      await Promise.all(victims.map((victim) => victim.kill('SIGKILL')));
      for (const victim of victims) expect(victim.child.signalCode).toBe('SIGKILL');
    },
    restart: start,
    inspect: (reader) => {
      expect(engine, 'inspected while down').toBeUndefined();
      return reader(state);
    },
    // Postgres and Kafka are read alongside the running processes: nothing to stop.
    audit: (reader) => reader(state),
    async waitReswept(packetId) {
      await eventually(
        'the second sweep',
        async () => (await rowsOf<{ swept: boolean }>(database.db, sql`select reswept_at is not null as swept from packets where id = ${packetId}`))[0]?.swept,
        (swept) => swept === true,
      );
    },
    async waitBooked(packetId, claims) {
      await eventually(
        'the ledger booked the claims',
        async () => (await rowsOf<{ count: number }>(database.db, sql`select count(*)::int as count from claims where packet_id = ${packetId}`))[0]!.count,
        (count) => count === claims,
      );
    },
  };
}

describe('kill -9 during a provider payment, on Kafka + Postgres + Redis', () => {
  it('between the return and the notification: the provider retries into the restarted engine, and every held claim is credited once', async () => {
    const world = await servicesWorld('return', { split: false });
    const report = await crashBetweenReturnAndNotification(world);
    expect(report.heldClaims).toBe(12);
    expect(report.failedAttempts).toBeGreaterThanOrEqual(1);
  });

  it('between the notification and the crediting (ledger SIGSTOPped, then every process killed): credited once after the restart', async () => {
    const world = await servicesWorld('notify', { split: true });
    // The ledger is held: the first attempt must hit the window.
    const report = await crashBetweenNotificationAndCrediting(world, { openers: 40, attemptsMax: 1 });
    expect(report.found).toEqual(['funded in the log, no claim credited']);
  });
});
