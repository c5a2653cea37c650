// The embedded default's durable log: an append-only table in the same database.
// Group-committed (one INSERT per batch of events) and written by one process at a time:
// the single in-flight append keeps seq order equal to commit order, which the reader
// relies on to never skip a row. For many writer processes, use the Kafka log.
import { sql, type SQL } from 'drizzle-orm';
import { readStartPositions, type EventLog, type LogBatch, type LogPosition, type StartPositions, type Subscription } from './event-log.js';
import type { PacketEvent } from './events.js';

/** Rows read per scan step. */
export const READ_BATCH_EVENTS_MAX = 5_000;
/**
 * Rows per consumer batch. A batch is one transaction, and on the embedded database nothing else
 * runs until it commits — the appends openers wait on included — so its size is what a crowd's
 * p99 pays for. Measured end to end (100,000 claims, 256 in flight): 400 → 5,614 claims/s, p99
 * 97 ms; 600 → 5,811, p99 112 ms; 1,000 → 6,175, p99 142 ms (docs/decisions.md).
 */
export const CONSUMER_BATCH_EVENTS_MAX = 400;
const IDLE_POLL_MS = 25;
/**
 * After a partial batch the reader waits until a full batch has been appended, or this long:
 * a ledger transaction per handful of events costs twice as much per event as one of hundreds
 * (measured: ~115 µs per event in batches of ~150, ~60 in batches of ~650), and it would take the
 * single embedded database away from the appends that openers are waiting on. So: larger
 * batches, fewer transactions, and a ledger at most this far behind when the load is light.
 */
const GATHER_MS = 100;
const RETRY_DELAY_MS = 200;

/** The little a table log needs from a database: run a statement, get rows. */
export interface SqlExecutor {
  execute(query: SQL): Promise<unknown>;
}

async function rows<Row>(executor: SqlExecutor, query: SQL): Promise<Row[]> {
  return ((await executor.execute(query)) as { rows: Row[] }).rows;
}

/** node-postgres hands jsonb back parsed; some drivers hand it back as text. */
const parseEvent = (event: PacketEvent | string): PacketEvent => (typeof event === 'string' ? (JSON.parse(event) as PacketEvent) : event);

export class TableLog implements EventLog {
  readonly name = 'table';
  /** Each subscription's wake-up, told how many events an append just added. */
  private readonly wakers = new Set<(appended: number) => void>();

  /** Reads of the log that failed (and were retried) since start. */
  readFailures = 0;

  constructor(
    private readonly executor: SqlExecutor,
    private readonly onReadError: (error: unknown) => void = () => {},
  ) {}

  async append(events: readonly PacketEvent[]): Promise<void> {
    if (events.length === 0) return;
    await this.executor.execute(sql`
      insert into log_events (packet_id, event)
      select packet_id, event::jsonb
      from unnest(${sql.param(events.map((event) => event.packetId))}::text[],
                  ${sql.param(events.map((event) => JSON.stringify(event)))}::text[])
           with ordinality as input(packet_id, event, position)
      order by position`);
    for (const wake of this.wakers) wake(events.length);
  }

  async subscribe(from: StartPositions, handler: (batch: LogBatch) => Promise<void>): Promise<Subscription> {
    let next = BigInt((await readStartPositions(from)).find((position) => position.partition === 0)?.nextOffset ?? '0');
    let running = true;
    /** Events appended by this process since the last read; what a waiting reader waits for. */
    let appendedSinceRead = 0;
    let waiting: { readonly until: number; resolve(): void } | undefined;
    /** Until `ms` pass, `events` events have been appended here since the last read (at once if so already), or stop(). */
    const sleep = (ms: number, events = 1) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => wakeUp(), ms);
        const wakeUp = () => {
          clearTimeout(timer);
          waiting = undefined;
          resolve();
        };
        waiting = { until: events, resolve: wakeUp };
        // Appended while the batch was being applied: no need to wait for more.
        if (appendedSinceRead >= events) wakeUp();
      });
    const waker = (appended: number) => {
      appendedSinceRead += appended;
      if (waiting !== undefined && appendedSinceRead >= waiting.until) waiting.resolve();
    };
    this.wakers.add(waker);

    const loop = async () => {
      while (running) {
        let read: { seq: string | number; event: PacketEvent | string }[];
        try {
          appendedSinceRead = 0;
          read = await rows(
            this.executor,
            sql`select seq, event from log_events where seq >= ${String(next)}::bigint order by seq limit ${CONSUMER_BATCH_EVENTS_MAX}`,
          );
        } catch (error) {
          // The database did not answer: count it, report it, and read again after a pause.
          this.readFailures += 1;
          this.onReadError(error);
          await sleep(RETRY_DELAY_MS, Number.POSITIVE_INFINITY); // a pause, whatever is appended meanwhile
          continue;
        }
        if (read.length === 0) {
          await sleep(IDLE_POLL_MS);
          continue;
        }
        const events = read.map((row) => parseEvent(row.event));
        const after = BigInt(read[read.length - 1]!.seq) + 1n;
        try {
          await handler({ events, positions: [{ partition: 0, nextOffset: after.toString() }] });
          next = after;
          if (read.length < CONSUMER_BATCH_EVENTS_MAX) await sleep(GATHER_MS, CONSUMER_BATCH_EVENTS_MAX);
        } catch (error) {
          // The handler stored nothing (and has counted and reported its failure): read the
          // same rows again after a pause. Anything but an Error is a bug, not a failed batch.
          if (!(error instanceof Error)) throw error;
          await sleep(RETRY_DELAY_MS, Number.POSITIVE_INFINITY); // a pause, whatever is appended meanwhile
        }
      }
    };
    const done = loop();
    return {
      stop: async () => {
        running = false;
        waiting?.resolve();
        await done;
        this.wakers.delete(waker);
      },
    };
  }

  async headFor(): Promise<LogPosition> {
    const found = await rows<{ head: string | number }>(this.executor, sql`select coalesce(max(seq) + 1, 0) as head from log_events`);
    return { partition: 0, nextOffset: String(found[0]?.head ?? 0) };
  }

  async heads(): Promise<LogPosition[]> {
    return [await this.headFor()];
  }

  async scan(until: readonly LogPosition[], visit: (events: readonly PacketEvent[]) => Promise<void> | void): Promise<void> {
    const end = BigInt(until.find((position) => position.partition === 0)?.nextOffset ?? '0');
    let next = 0n;
    while (next < end) {
      const read = await rows<{ seq: string | number; event: PacketEvent | string }>(
        this.executor,
        sql`select seq, event from log_events where seq >= ${String(next)}::bigint and seq < ${String(end)}::bigint
            order by seq limit ${READ_BATCH_EVENTS_MAX}`,
      );
      if (read.length === 0) return;
      await visit(read.map((row) => parseEvent(row.event)));
      next = BigInt(read[read.length - 1]!.seq) + 1n;
    }
  }

  async close(): Promise<void> {}
}
