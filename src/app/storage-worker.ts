// The storage thread's side (a worker thread; src/app/storage-thread.ts starts it): it owns the
// database — embedded PGlite's folder, or a pool of connections to a Postgres server — and runs
// everything that executes SQL: the ledger's queries, the table log, and the ledger consumer.
// The main thread, which parses HTTP and decides opens, only sends it messages.
import { parentPort } from 'node:worker_threads';
import { pino } from 'pino';
import { openDatabase, type Database } from '../ledger/database.js';
import { Ledger } from '../ledger/ledger.js';
import { LedgerConsumer } from '../ledger/ledger-consumer.js';
import type { EventLog } from '../log/event-log.js';
import { TableLog } from '../log/table-log.js';
import { openKafkaLog } from './open-kafka-log.js';
import * as notifications from '../ledger/notifications.js';
import { Notifier } from '../notify/notifier.js';
import type { StorageSettings } from './storage-thread.js';
import { serveRpc, type Port } from './thread-rpc.js';

const port = parentPort as unknown as Port;
let parts: { database: Database; log: EventLog; notifyLog: EventLog; ledger: Ledger; consumer: LedgerConsumer; notifier: Notifier } | undefined;
const opened = () => {
  if (parts === undefined) throw new Error('the storage thread is not open yet');
  return parts;
};

const rpc = serveRpc(port, {
  async open(settings: StorageSettings) {
    const logger = pino({ level: settings.logLevel }).child({ thread: 'storage' });
    const database = await openDatabase({
      url: settings.databaseUrl,
      dataDir: settings.dataDir,
      ...(settings.loadDataDir === undefined ? {} : { loadDataDir: settings.loadDataDir }),
      onPoolError: (error) => logger.warn({ err: error }, 'database connection lost; reconnecting on next use'),
    });
    try {
      // The log the consumer reads: the table in this database, or (services mode) Kafka.
      const log =
        settings.kafka === undefined
          ? new TableLog(database.db, (error) => logger.warn({ err: error }, 'reading the table log failed; retrying'))
          : await openKafkaLog(settings.kafka, logger);
      const consumer = new LedgerConsumer(database.db, log, {
        onApplied: ({ claims, durationMs }) =>
          rpc.emit('applied', { claims: claims.map(({ userId, packetId, seq }) => ({ userId, packetId, seq })), durationMs, stats: statsOf(consumer) }),
        onError: (error) => {
          logger.warn({ err: error }, 'ledger batch or position read failed; it will be retried');
          rpc.emit('stats', statsOf(consumer));
        },
        // A conflicting duplicate is never dropped silently: recorded, counted, logged, reconciled.
        onConflict: (conflict) => logger.error({ conflict }, `ledger conflict: ${conflict.message}`),
      });
      // The notifier reads the same log with its own positions (on Kafka: its own consumer group).
      const notifyLog = settings.kafka === undefined ? log : await openKafkaLog(settings.kafka, logger, 'notify');
      const notifier = new Notifier(database.db, notifyLog, {
        ledgerApplied: (positions, timeoutMs) => consumer.waitAppliedAll(positions, timeoutMs),
        now: () => Date.now(),
        onRecorded: (users, events) => rpc.emit('notified', { users, events }),
        onError: (error) => logger.warn({ err: error }, 'notification batch failed; it will be retried'),
      });
      parts = { database, log, notifyLog, ledger: new Ledger(database, log), consumer, notifier };
      return { kind: database.kind, where: database.where, logName: log.name };
    } catch (error) {
      await database.close().catch(() => {});
      throw error;
    }
  },
  'ledger.send': (...args: Parameters<Ledger['send']>) => opened().ledger.send(...args),
  'ledger.deposit': (...args: Parameters<Ledger['deposit']>) => opened().ledger.deposit(...args),
  'ledger.findSend': (...args: Parameters<Ledger['findSend']>) => opened().ledger.findSend(...args),
  'ledger.wallet': (...args: Parameters<Ledger['wallet']>) => opened().ledger.wallet(...args),
  'ledger.bookedClaims': (transferIds: string[]) => opened().ledger.bookedClaims(transferIds),
  'ledger.duePayments': (...args: Parameters<Ledger['duePayments']>) => opened().ledger.duePayments(...args),
  'ledger.markOrderClosed': (...args: Parameters<Ledger['markOrderClosed']>) => opened().ledger.markOrderClosed(...args),
  'ledger.resweep': (cutoffMs: number) => opened().ledger.resweep(cutoffMs),
  'ledger.rememberNonce': (...args: Parameters<Ledger['rememberNonce']>) => opened().ledger.rememberNonce(...args),
  'ledger.load': (packetId: string) => opened().ledger.load(packetId),
  'ledger.duePacketIds': (nowMs: number, limit: number) => opened().ledger.duePacketIds(nowMs, limit),
  'ledger.sentRecords': (...args: Parameters<Ledger['sentRecords']>) => opened().ledger.sentRecords(...args),
  'ledger.receivedRecords': (...args: Parameters<Ledger['receivedRecords']>) => opened().ledger.receivedRecords(...args),
  'ledger.reconcile': () => opened().ledger.reconcile(),
  'ledger.check': () => opened().ledger.check(),
  'log.append': (events: Parameters<EventLog['append']>[0]) => opened().log.append(events),
  'log.headFor': (packetId: string) => opened().log.headFor(packetId),
  'log.heads': () => opened().log.heads(),
  'consumer.start': async () => {
    await opened().consumer.start();
    // Wherever the log is booked, it is also read for notifications.
    await opened().notifier.start();
    return statsOf(opened().consumer);
  },
  'consumer.stop': async () => {
    await opened().notifier.stop();
    await opened().consumer.stop();
  },
  'notify.createWebhook': (webhook: Parameters<typeof notifications.createWebhook>[1]) => notifications.createWebhook(opened().database.db, webhook),
  'notify.listWebhooks': () => notifications.listWebhooks(opened().database.db),
  'notify.deleteWebhook': (id: string) => notifications.deleteWebhook(opened().database.db, id),
  'notify.leaseDeliveries': (nowMs: number, limit: number, perWebhookMax: number, leaseMs: number) =>
    opened().database.db.transaction((tx) => notifications.leaseDeliveries(tx, nowMs, limit, perWebhookMax, leaseMs)),
  'notify.completeDeliveries': (completed: Parameters<typeof notifications.completeDeliveries>[1], nowMs: number) =>
    notifications.completeDeliveries(opened().database.db, completed, nowMs),
  'notify.retriesPending': () => notifications.retriesPending(opened().database.db),
  'notify.eventsFor': (userId: string, afterSeq: number, limit: number) => notifications.eventsFor(opened().database.db, userId, afterSeq, limit),
  'notify.seqOfEvent': (userId: string, eventId: string) => notifications.seqOfEvent(opened().database.db, userId, eventId),
  'notify.lastSeqFor': (userId: string) => notifications.lastSeqFor(opened().database.db, userId),
  'notify.pruneNotifications': (nowMs: number) => notifications.pruneNotifications(opened().database.db, nowMs),
  'consumer.waitApplied': async (...args: Parameters<LedgerConsumer['waitApplied']>) => {
    await opened().consumer.waitApplied(...args);
    return statsOf(opened().consumer);
  },
  'consumer.waitAppliedAll': async (...args: Parameters<LedgerConsumer['waitAppliedAll']>) => {
    await opened().consumer.waitAppliedAll(...args);
    return statsOf(opened().consumer);
  },
  /** A raw statement, compiled on the caller's side (tests and operators' checks). */
  'sql.execute': async (text: string, params: unknown[]) => {
    const { rows } = await (opened().database.db as unknown as { $client: { query(text: string, params: unknown[]): Promise<{ rows: unknown[] }> } }).$client.query(text, params);
    return { rows };
  },
  async close() {
    if (parts === undefined) return;
    const { consumer, notifier, log, notifyLog, database } = parts;
    parts = undefined;
    await notifier.stop();
    await consumer.stop();
    if (notifyLog !== log) await notifyLog.close();
    await log.close();
    await database.close();
  },
});

/** What the main thread mirrors of the consumer, for its metrics and the lag gauge. */
export interface ConsumerStats {
  readonly appliedEvents: number;
  readonly failedBatches: number;
  readonly conflicts: number;
  readonly failedPositionReads: number;
  /** Reads of the table log that failed and were retried (0 on Kafka). */
  readonly logReadFailures: number;
  readonly positions: ReturnType<LedgerConsumer['appliedPositions']>;
}

function statsOf(consumer: LedgerConsumer): ConsumerStats {
  const { appliedEvents, failedBatches, conflicts, failedPositionReads } = consumer;
  const log = parts?.log;
  const logReadFailures = log instanceof TableLog ? log.readFailures : 0;
  return { appliedEvents, failedBatches, conflicts, failedPositionReads, logReadFailures, positions: consumer.appliedPositions() };
}
