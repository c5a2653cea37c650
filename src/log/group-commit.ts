// Group commit: the events that many actors decide in one tick share one durable append.
// One append is in flight at a time, so the log receives events in decision order.
import { UnavailableError } from '../domain/errors.js';
import type { EventLog } from './event-log.js';
import type { PacketEvent } from './events.js';

/** Upper bound of one append; a larger backlog goes out in several appends, in order. */
export const BATCH_EVENTS_MAX = 4096;

/** Events that go out in one append, and the one promise all their submitters wait on. */
interface Batch {
  readonly events: PacketEvent[];
  readonly onFailure: (() => void)[];
  readonly done: Promise<void>;
  resolve(): void;
  reject(error: unknown): void;
}

export interface CommitStats {
  appends: number;
  events: number;
}

/** Where the group-committed events go: an event log, or one slot of it. */
export type AppendTarget = Pick<EventLog, 'name' | 'append'>;

/** What the engine commits through, and what the metrics read. */
export interface Committer {
  submit(event: PacketEvent, onFailure?: () => void): Promise<void>;
  readonly stats: Readonly<CommitStats>;
}

function newBatch(): Batch {
  let resolve: () => void = () => {};
  let reject: (error: unknown) => void = () => {};
  const done = new Promise<void>((onResolve, onReject) => {
    resolve = onResolve;
    reject = onReject;
  });
  // Submitters attach their own handlers; this one keeps a batch nobody waits on from crashing the process.
  done.catch(() => {});
  return { events: [], onFailure: [], done, resolve, reject };
}

export class GroupCommitter implements Committer {
  /** Batches waiting to be appended, in order; only the last one still takes events. */
  private queue: Batch[] = [];
  private flushing = false;
  private scheduled = false;
  readonly stats: CommitStats = { appends: 0, events: 0 };

  /** No append starts before this moment (performance.now()): the rest after the last one. */
  private restingUntil = 0;

  constructor(
    private readonly log: AppendTarget,
    private readonly batchEventsMax = BATCH_EVENTS_MAX,
    /**
     * A pause after each append before the next starts, while its events gather (a Kafka
     * producer's linger). For a slot's transactions (slot-committers.ts): the coordinator is still
     * writing the last commit's markers, and a transaction begun at once is refused
     * (CONCURRENT_TRANSACTIONS) and retried by kafkajs — two more requests for nothing.
     */
    private readonly pauseAfterAppendMs = 0,
  ) {}

  /**
   * Resolves when the event is durable; rejects with UnavailableError if its append failed.
   * Every event of a batch shares one promise: no allocation per event on the hot path.
   */
  submit(event: PacketEvent, onFailure?: () => void): Promise<void> {
    let batch = this.queue[this.queue.length - 1];
    if (batch === undefined || batch.events.length >= this.batchEventsMax) {
      batch = newBatch();
      this.queue.push(batch);
    }
    batch.events.push(event);
    if (onFailure !== undefined) batch.onFailure.push(onFailure);
    this.schedule();
    return batch.done;
  }

  get queuedEvents(): number {
    let events = 0;
    for (const batch of this.queue) events += batch.events.length;
    return events;
  }

  private schedule(): void {
    if (this.flushing || this.scheduled) return;
    this.scheduled = true;
    const run = () => {
      this.scheduled = false;
      void this.flush();
    };
    const resting = this.restingUntil - performance.now();
    // setImmediate, not a microtask: every open decided in this turn of the event loop joins the batch.
    if (resting > 0) setTimeout(run, resting);
    else setImmediate(run);
  }

  private async flush(): Promise<void> {
    const batch = this.queue[0];
    if (this.flushing || batch === undefined) return;
    this.flushing = true;
    this.queue.shift();
    try {
      await this.log.append(batch.events);
      this.stats.appends += 1;
      this.stats.events += batch.events.length;
      if (this.pauseAfterAppendMs > 0) this.restingUntil = performance.now() + this.pauseAfterAppendMs;
      batch.resolve();
    } catch (cause) {
      // Everything still queued was decided on top of the failed events: fail it too, so a
      // packet's durable claims are always a prefix of what its actor decided.
      const failed = [batch, ...this.queue.splice(0)];
      const error = new UnavailableError(`the event log (${this.log.name}) did not accept the write`, { cause });
      // Synchronous notice first: no decision may run between the failure and its owners learning of it.
      for (const each of failed) for (const notify of each.onFailure) notify();
      for (const each of failed) each.reject(error);
    } finally {
      this.flushing = false;
      if (this.queue.length > 0) this.schedule();
    }
  }
}
