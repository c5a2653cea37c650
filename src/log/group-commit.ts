// Group commit: the events that many actors decide in one tick share one durable append.
// One append is in flight at a time, so the log receives events in decision order.
import { UnavailableError } from '../domain/errors.js';
import type { EventLog } from './event-log.js';
import type { PacketEvent } from './events.js';

/** Upper bound of one append; a larger backlog goes out in several appends, in order. */
export const BATCH_EVENTS_MAX = 4096;

interface Pending {
  readonly event: PacketEvent;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
  readonly onFailure: (() => void) | undefined;
}

export interface CommitStats {
  appends: number;
  events: number;
}

export class GroupCommitter {
  private queue: Pending[] = [];
  private flushing = false;
  private scheduled = false;
  readonly stats: CommitStats = { appends: 0, events: 0 };

  constructor(
    private readonly log: EventLog,
    private readonly batchEventsMax = BATCH_EVENTS_MAX,
  ) {}

  /** Resolves when the event is durable; rejects with UnavailableError if its append failed. */
  submit(event: PacketEvent, onFailure?: () => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ event, resolve, reject, onFailure });
      this.schedule();
    });
  }

  get queuedEvents(): number {
    return this.queue.length;
  }

  private schedule(): void {
    if (this.flushing || this.scheduled) return;
    this.scheduled = true;
    // setImmediate, not a microtask: every open decided in this turn of the event loop joins the batch.
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.flushing || this.queue.length === 0) return;
    this.flushing = true;
    const batch = this.queue.splice(0, this.batchEventsMax);
    try {
      await this.log.append(batch.map((pending) => pending.event));
      this.stats.appends += 1;
      this.stats.events += batch.length;
      for (const pending of batch) pending.resolve();
    } catch (cause) {
      // Everything still queued was decided on top of the failed events: fail it too, so a
      // packet's durable claims are always a prefix of what its actor decided.
      const failed = batch.concat(this.queue.splice(0));
      const error = new UnavailableError(`the event log (${this.log.name}) did not accept the write`, { cause });
      // Synchronous notice first: no decision may run between the failure and its owners learning of it.
      for (const pending of failed) pending.onFailure?.();
      for (const pending of failed) pending.reject(error);
    } finally {
      this.flushing = false;
      if (this.queue.length > 0) this.schedule();
    }
  }
}
