// The storage thread, main side: the database, the ledger's queries, the table log and the
// ledger consumer run in a worker thread (storage-worker.ts), so the event loop that parses
// HTTP and decides opens never runs SQL — on the embedded default, PGlite's WebAssembly took
// half of it (issue 11). What the rest of the process holds are proxies with the interfaces it
// used before: the ledger, the consumer, and (table log) the log's writing side. Calls cross as
// messages; one group commit is one message, so the hop costs little per open.
import { Worker } from 'node:worker_threads';
import type { SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { UnavailableError } from '../domain/errors.js';
import type { LedgerPort } from '../ledger/ledger.js';
import type { NotificationStorePort } from '../notify/store-port.js';
import type { ConsumerPort } from '../ledger/ledger-consumer.js';
import { compareOffsets, type EventLog, type LogPosition } from '../log/event-log.js';
import type { KafkaSettings } from './open-kafka-log.js';
import type { ConsumerStats } from './storage-worker.js';
import { RpcClient } from './thread-rpc.js';

export interface StorageSettings {
  /** PGlite's folder, or 'memory' (ignored with a database URL). */
  readonly dataDir: string;
  /** Embedded PGlite only: start from this dump of a migrated database (tests). */
  readonly loadDataDir?: Blob | undefined;
  /** A Postgres server; unset means embedded PGlite. */
  readonly databaseUrl?: string | undefined;
  /** Services mode: the consumer reads this Kafka topic; unset, the table log in the database. */
  readonly kafka?: KafkaSettings | undefined;
  /** The thread logs on its own (pino, to the same stdout) at this level. */
  readonly logLevel: string;
}

export interface AppliedClaim {
  readonly userId: string;
  readonly packetId: string;
  readonly seq: number;
}

export interface StorageEvents {
  /** A ledger batch committed with these claims in it (pending credits settle). */
  onApplied(claims: readonly AppliedClaim[], durationMs: number): void;
  /** The thread died: nothing more can be read or booked; the process must stop serving. */
  onLost(error: Error): void;
  /** The notifier stored new events for these users (their live streams wake). */
  onNotified?(users: readonly string[]): void;
}

/** The writing side of the table log, as the group committer, the engine and metrics use it. */
export type AppendLog = Pick<EventLog, 'name' | 'append' | 'headFor' | 'heads' | 'close'> & { readonly readFailures?: number };

/** The database as the process sees it: what it is, and raw statements (tests, checks). */
export interface DatabaseHandle {
  readonly kind: 'pglite' | 'postgres';
  readonly where: string;
  execute(query: SQL): Promise<{ rows: unknown[] }>;
}

/** The worker's code is beside this file: compiled, or TypeScript (then typescript-worker.mjs loads it through tsx). */
function startWorker(): Worker {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(new URL('./storage-worker.js', here));
  return new Worker(new URL('./typescript-worker.mjs', here), { workerData: { typescriptEntry: new URL('./storage-worker.ts', here).href } });
}

export class StorageThread {
  readonly ledger: LedgerPort;
  readonly consumer: RemoteConsumer;
  /** The notification tables (webhooks, deliveries, streams). */
  readonly notifications: NotificationStorePort;
  /** The table log's writing side; undefined on Kafka (the process writes to Kafka itself). */
  readonly log: AppendLog | undefined;
  private closing = false;

  private constructor(
    /** The thread itself (operators' tools and the fail-stop test terminate it). */
    readonly worker: Worker,
    private readonly rpc: RpcClient,
    readonly database: DatabaseHandle,
    logName: string,
  ) {
    const call = <Result>(method: string) => (...args: unknown[]) => rpc.call<Result>(method, ...args);
    this.ledger = {
      send: call('ledger.send'),
      deposit: call('ledger.deposit'),
      findSend: call('ledger.findSend'),
      wallet: call('ledger.wallet'),
      bookedClaims: call('ledger.bookedClaims'),
      duePayments: call('ledger.duePayments'),
      markOrderClosed: call('ledger.markOrderClosed'),
      resweep: call('ledger.resweep'),
      rememberNonce: call('ledger.rememberNonce'),
      load: call('ledger.load'),
      duePacketIds: call('ledger.duePacketIds'),
      sentRecords: call('ledger.sentRecords'),
      receivedRecords: call('ledger.receivedRecords'),
      reconcile: call('ledger.reconcile'),
      check: call('ledger.check'),
    };
    this.notifications = {
      createWebhook: call('notify.createWebhook'),
      listWebhooks: call('notify.listWebhooks'),
      deleteWebhook: call('notify.deleteWebhook'),
      leaseDeliveries: call('notify.leaseDeliveries'),
      completeDeliveries: call('notify.completeDeliveries'),
      retriesPending: call('notify.retriesPending'),
      eventsFor: call('notify.eventsFor'),
      seqOfEvent: call('notify.seqOfEvent'),
      lastSeqFor: call('notify.lastSeqFor'),
      pruneNotifications: call('notify.pruneNotifications'),
    };
    this.consumer = new RemoteConsumer(rpc);
    const consumer = this.consumer;
    this.log =
      logName === 'table'
        ? {
            name: 'table',
            append: call('log.append'),
            headFor: call('log.headFor'),
            heads: call('log.heads'),
            close: async () => {},
            get readFailures() {
              return consumer.logReadFailures;
            },
          }
        : undefined;
  }

  static async start(settings: StorageSettings, events: StorageEvents): Promise<StorageThread> {
    const worker = startWorker();
    let thread: StorageThread | undefined;
    const rpc = new RpcClient(worker, (name, payload) => {
      if (name === 'applied') {
        const applied = payload as { claims: AppliedClaim[]; durationMs: number; stats: ConsumerStats };
        thread?.consumer.mirror(applied.stats);
        events.onApplied(applied.claims, applied.durationMs);
      } else if (name === 'notified') {
        events.onNotified?.((payload as { users: string[] }).users);
      } else if (name === 'stats') {
        thread?.consumer.mirror(payload as ConsumerStats);
      }
    });
    const lost = (error: Error) => {
      rpc.close(new UnavailableError('the storage thread stopped', { cause: error }));
      if (thread !== undefined && !thread.closing) events.onLost(error);
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`the storage thread exited with code ${code}`)));
    try {
      const opened = await rpc.call<{ kind: 'pglite' | 'postgres'; where: string; logName: string }>('open', settings);
      const dialect = new PgDialect();
      const database: DatabaseHandle = {
        kind: opened.kind,
        where: opened.where,
        execute: (query) => {
          const compiled = dialect.sqlToQuery(query);
          return rpc.call('sql.execute', compiled.sql, compiled.params);
        },
      };
      thread = new StorageThread(worker, rpc, database, opened.logName);
      return thread;
    } catch (error) {
      await worker.terminate();
      throw error;
    }
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    try {
      await this.rpc.call('close');
    } finally {
      await this.worker.terminate();
    }
  }
}

/** The consumer in the storage thread: calls go there; its figures are mirrored here from its events. */
export class RemoteConsumer implements ConsumerPort {
  appliedEvents = 0;
  failedBatches = 0;
  conflicts = 0;
  failedPositionReads = 0;
  logReadFailures = 0;
  private readonly positions = new Map<number, string>();

  constructor(private readonly rpc: RpcClient) {}

  mirror(stats: ConsumerStats): void {
    this.appliedEvents = stats.appliedEvents;
    this.failedBatches = stats.failedBatches;
    this.conflicts = stats.conflicts;
    this.failedPositionReads = stats.failedPositionReads;
    this.logReadFailures = stats.logReadFailures;
    for (const { partition, nextOffset } of stats.positions) {
      if (compareOffsets(nextOffset, this.appliedPosition(partition)) > 0) this.positions.set(partition, nextOffset);
    }
  }

  async start(): Promise<void> {
    this.mirror(await this.rpc.call<ConsumerStats>('consumer.start'));
  }

  async stop(): Promise<void> {
    await this.rpc.call('consumer.stop');
  }

  async waitApplied(position: LogPosition, timeoutMs: number): Promise<void> {
    this.mirror(await this.rpc.call<ConsumerStats>('consumer.waitApplied', position, timeoutMs));
  }

  async waitAppliedAll(positions: readonly LogPosition[], timeoutMs: number): Promise<void> {
    this.mirror(await this.rpc.call<ConsumerStats>('consumer.waitAppliedAll', positions, timeoutMs));
  }

  appliedPosition(partition: number): string {
    return this.positions.get(partition) ?? '0';
  }
}
