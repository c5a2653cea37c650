// The embedded default's durable log: an append-only table in the same database.
// Group-committed (one INSERT per batch of events) and written by one process at a time:
// the single in-flight append keeps seq order equal to commit order, which the reader
// relies on to never skip a row. For many writer processes, use the Kafka log.
import { sql, type SQL } from 'drizzle-orm';
import { readStartPositions, type EventLog, type LogBatch, type LogPosition, type StartPositions, type Subscription } from './event-log.js';
import type { PacketEvent } from './events.js';

/** Rows read per consumer batch. */
export const READ_BATCH_EVENTS_MAX = 5_000;
const IDLE_POLL_MS = 25;
/**
 * After a partial batch the reader waits this long before reading again, even when woken:
 * a ledger transaction per handful of events would take the single embedded database away
 * from the appends that openers are waiting on. Larger batches, fewer transactions.
 */
const GATHER_MS = 20;
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
  private readonly wakers = new Set<() => void>();

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
    for (const wake of this.wakers) wake();
  }

  async subscribe(from: StartPositions, handler: (batch: LogBatch) => Promise<void>): Promise<Subscription> {
    let next = BigInt((await readStartPositions(from)).find((position) => position.partition === 0)?.nextOffset ?? '0');
    let running = true;
    let wake: () => void = () => {};
    const sleep = (ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    const waker = () => wake();
    this.wakers.add(waker);

    const loop = async () => {
      while (running) {
        let read: { seq: string | number; event: PacketEvent | string }[];
        try {
          read = await rows(
            this.executor,
            sql`select seq, event from log_events where seq >= ${String(next)}::bigint order by seq limit ${READ_BATCH_EVENTS_MAX}`,
          );
        } catch (error) {
          // The database did not answer: count it, report it, and read again after a pause.
          this.readFailures += 1;
          this.onReadError(error);
          await sleep(RETRY_DELAY_MS);
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
          if (read.length < READ_BATCH_EVENTS_MAX) await new Promise((resolve) => setTimeout(resolve, GATHER_MS));
        } catch (error) {
          // The handler stored nothing (and has counted and reported its failure): read the
          // same rows again after a pause. Anything but an Error is a bug, not a failed batch.
          if (!(error instanceof Error)) throw error;
          await sleep(RETRY_DELAY_MS);
        }
      }
    };
    const done = loop();
    return {
      stop: async () => {
        running = false;
        wake();
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
