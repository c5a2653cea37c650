// The live streams of GET /v1/me/events: a user's events from the database, after the last one
// they saw (Last-Event-ID), then each new one as the notifier stores it (it wakes the streams of
// the users concerned; a poll catches what another process stored). Bounded per user and per
// process: past either, a new stream is refused at once, nothing queued.
import type { StreamedEvent } from '../ledger/notifications.js';
import type { NotificationStorePort } from '../notify/store-port.js';

export const STREAMS_PER_USER_MAX = 5;
export const STREAMS_MAX = 10_000;
/** Events read per wake. */
export const STREAM_BATCH_MAX = 100;
/** How long a stream waits for a wake before it looks anyway (events stored by another process). */
export const STREAM_POLL_MS = 1_000;

export interface EventStream {
  /** The next events (after the last returned), waiting up to waitMs for one; empty if none came. */
  next(waitMs: number): Promise<StreamedEvent[]>;
  close(): void;
}

export type StreamOpening = { kind: 'opened'; stream: EventStream } | { kind: 'unknown_event' } | { kind: 'too_many'; reason: string };

export class EventStreams {
  private readonly wakers = new Map<string, Set<() => void>>();
  private open = 0;

  constructor(
    private readonly store: NotificationStorePort,
    private readonly limits = { perUser: STREAMS_PER_USER_MAX, total: STREAMS_MAX },
  ) {}

  get count(): number {
    return this.open;
  }

  /** New events were stored for these users. */
  wakeUsers(users: readonly string[]): void {
    for (const user of users) for (const wake of this.wakers.get(user) ?? []) wake();
  }

  async openStream(userId: string, lastEventId: string | undefined): Promise<StreamOpening> {
    const mine = this.wakers.get(userId)?.size ?? 0;
    if (mine >= this.limits.perUser) return { kind: 'too_many', reason: `at most ${this.limits.perUser} event streams per user` };
    if (this.open >= this.limits.total) return { kind: 'too_many', reason: `this process serves at most ${this.limits.total} event streams` };
    let after: number;
    if (lastEventId === undefined) {
      after = await this.store.lastSeqFor(userId);
    } else {
      const seq = await this.store.seqOfEvent(userId, lastEventId);
      if (seq === null) return { kind: 'unknown_event' };
      after = seq;
    }
    // Counted from here: the checks above awaited, and another stream may have opened meanwhile.
    if ((this.wakers.get(userId)?.size ?? 0) >= this.limits.perUser || this.open >= this.limits.total) {
      return { kind: 'too_many', reason: 'too many event streams' };
    }
    let woken = false;
    let wakeNow: (() => void) | undefined;
    const waker = () => {
      woken = true;
      wakeNow?.();
    };
    let set = this.wakers.get(userId);
    if (set === undefined) this.wakers.set(userId, (set = new Set()));
    set.add(waker);
    this.open += 1;
    let closed = false;
    const stream: EventStream = {
      next: async (waitMs) => {
        for (;;) {
          woken = false;
          const events = await this.store.eventsFor(userId, after, STREAM_BATCH_MAX);
          if (events.length > 0) {
            after = events[events.length - 1]!.seq;
            return events;
          }
          if (closed || waitMs <= 0) return [];
          if (!woken) {
            await new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, Math.min(waitMs, STREAM_POLL_MS));
              wakeNow = () => {
                clearTimeout(timer);
                resolve();
              };
            });
            wakeNow = undefined;
          }
          if (!woken) return [];
        }
      },
      close: () => {
        if (closed) return;
        closed = true;
        wakeNow?.();
        set.delete(waker);
        if (set.size === 0) this.wakers.delete(userId);
        this.open -= 1;
      },
    };
    return { kind: 'opened', stream };
  }
}
