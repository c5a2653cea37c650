// Proves group commit: events decided in one tick share one append, order is kept, BATCH_EVENTS_MAX bounds an append, one append is in flight at a time, and a failed append rejects its batch and everything queued behind it (onFailure first, synchronously), after which new submits work again.
import { describe, expect, it } from 'vitest';
import { UnavailableError } from '../../src/domain/errors.js';
import type { EventLog, LogPosition, Subscription } from '../../src/log/event-log.js';
import type { ClaimEvent, PacketEvent } from '../../src/log/events.js';
import { BATCH_EVENTS_MAX, GroupCommitter } from '../../src/log/group-commit.js';

interface Deferred {
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/** An EventLog whose appends are recorded and completed by the test, one by one, or at once when `manual` is off. */
class ControlledLog implements EventLog {
  readonly name = 'controlled';
  readonly appends: PacketEvent[][] = [];
  readonly waiting: Deferred[] = [];
  appendsInFlight = 0;
  appendsInFlightMax = 0;

  constructor(private readonly manual: boolean) {}

  append(events: readonly PacketEvent[]): Promise<void> {
    this.appends.push([...events]);
    if (!this.manual) return Promise.resolve();
    this.appendsInFlight += 1;
    this.appendsInFlightMax = Math.max(this.appendsInFlightMax, this.appendsInFlight);
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        this.appendsInFlight -= 1;
      };
      this.waiting.push({
        resolve: () => {
          done();
          resolve();
        },
        reject: (error) => {
          done();
          reject(error);
        },
      });
    });
  }

  /** Completes the oldest append still waiting. */
  next(): Deferred {
    const deferred = this.waiting.shift();
    if (deferred === undefined) throw new Error('no append is waiting');
    return deferred;
  }

  async subscribe(): Promise<Subscription> {
    throw new Error('not used');
  }
  async headFor(): Promise<LogPosition> {
    return { partition: 0, nextOffset: String(this.appends.flat().length) };
  }
  async heads(): Promise<LogPosition[]> {
    return [await this.headFor()];
  }
  /** Group commit never reads the log back. */
  async scan(): Promise<void> {
    throw new Error('ControlledLog has no history to scan');
  }
  async close(): Promise<void> {}
}

const claim = (packetId: string, seq: number): ClaimEvent => ({
  kind: 'claim',
  packetId,
  seq,
  userId: `user-${seq}`,
  amountFen: 100,
  atMs: 0,
});

/** One turn of the event loop: the committer flushes on setImmediate. */
const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));
/** Lets every pending microtask (promise continuations) run. */
const drainMicrotasks = async () => {
  for (let round = 0; round < 20; round += 1) await Promise.resolve();
};

function outcomeOf(promise: Promise<void>): { state: 'pending' | 'resolved' | 'rejected'; error?: unknown } {
  const outcome: { state: 'pending' | 'resolved' | 'rejected'; error?: unknown } = { state: 'pending' };
  promise.then(
    () => {
      outcome.state = 'resolved';
    },
    (error: unknown) => {
      outcome.state = 'rejected';
      outcome.error = error;
    },
  );
  return outcome;
}

describe('GroupCommitter', () => {
  it('sends the events that many packets decide in one tick in one append, in submit order', async () => {
    const log = new ControlledLog(false);
    const committer = new GroupCommitter(log);
    const events = [claim('a', 1), claim('b', 1), claim('a', 2), claim('c', 1), claim('b', 2)];
    const submitted = events.map((event) => committer.submit(event));
    expect(log.appends).toHaveLength(0); // nothing goes out before the tick ends
    expect(committer.queuedEvents).toBe(events.length);
    await Promise.all(submitted);
    expect(log.appends).toEqual([events]);
    expect(committer.stats).toEqual({ appends: 1, events: events.length });
    expect(committer.queuedEvents).toBe(0);
  });

  it('resolves a submit only once its append is durable, and keeps one append in flight, batching what arrives meanwhile', async () => {
    const log = new ControlledLog(true);
    const committer = new GroupCommitter(log);
    const first = outcomeOf(committer.submit(claim('a', 1)));
    await nextTick();
    expect(log.appends).toEqual([[claim('a', 1)]]);
    expect(first.state).toBe('pending');

    // Decided while the first append is in flight, over several ticks: they wait and then go out together.
    const second = outcomeOf(committer.submit(claim('a', 2)));
    await nextTick();
    const third = outcomeOf(committer.submit(claim('b', 1)));
    await nextTick();
    expect(log.appends).toHaveLength(1);
    expect(committer.queuedEvents).toBe(2);

    log.next().resolve();
    await drainMicrotasks();
    expect(first.state).toBe('resolved');
    expect(second.state).toBe('pending');
    await nextTick();
    expect(log.appends).toEqual([[claim('a', 1)], [claim('a', 2), claim('b', 1)]]);
    log.next().resolve();
    await drainMicrotasks();
    expect([second.state, third.state]).toEqual(['resolved', 'resolved']);
    expect(log.appendsInFlightMax).toBe(1);
    expect(committer.stats).toEqual({ appends: 2, events: 3 });
  });

  it('never puts more than BATCH_EVENTS_MAX events in one append, and sends a larger backlog in order', async () => {
    expect(BATCH_EVENTS_MAX).toBeGreaterThan(0);
    const log = new ControlledLog(false);
    const committer = new GroupCommitter(log, 3);
    const events = Array.from({ length: 8 }, (_, index) => claim(`p${index % 3}`, index + 1));
    await Promise.all(events.map((event) => committer.submit(event)));
    expect(log.appends.map((batch) => batch.length)).toEqual([3, 3, 2]);
    expect(log.appends.flat()).toEqual(events);
  });

  it('keeps the default bound: a backlog above BATCH_EVENTS_MAX takes two appends', async () => {
    const log = new ControlledLog(false);
    const committer = new GroupCommitter(log);
    const events = Array.from({ length: BATCH_EVENTS_MAX + 1 }, (_, index) => claim('big', index + 1));
    await Promise.all(events.map((event) => committer.submit(event)));
    expect(log.appends.map((batch) => batch.length)).toEqual([BATCH_EVENTS_MAX, 1]);
    expect(log.appends.flat()).toEqual(events);
  });

  it('fails the batch and everything queued behind it, telling every owner synchronously before any rejection', async () => {
    const log = new ControlledLog(true);
    const committer = new GroupCommitter(log);
    const order: string[] = [];
    const submit = (event: PacketEvent, label: string) => {
      const promise = committer.submit(event, () => {
        order.push(`failure ${label}`);
        // A continuation queued from inside onFailure must not run before the other owners hear of the failure.
        if (label === 'a1') queueMicrotask(() => order.push('microtask after first failure'));
      });
      promise.then(
        () => order.push(`resolved ${label}`),
        (error: unknown) => {
          expect(error).toBeInstanceOf(UnavailableError);
          expect((error as UnavailableError).cause).toBeInstanceOf(Error);
          order.push(`rejected ${label}`);
        },
      );
    };
    submit(claim('a', 1), 'a1');
    submit(claim('b', 1), 'b1');
    await nextTick();
    expect(log.appends).toHaveLength(1);
    // Queued behind the in-flight append: decided on top of events that are about to fail.
    submit(claim('a', 2), 'a2');
    submit(claim('c', 1), 'c1');
    expect(committer.queuedEvents).toBe(2);

    log.next().reject(new Error('broker unreachable'));
    await drainMicrotasks();

    expect(order.slice(0, 4)).toEqual(['failure a1', 'failure b1', 'failure a2', 'failure c1']);
    expect(order.slice(4).sort()).toEqual(['microtask after first failure', 'rejected a1', 'rejected a2', 'rejected b1', 'rejected c1']);
    expect(log.appends).toHaveLength(1); // the queued events were never sent
    expect(committer.queuedEvents).toBe(0);
    expect(committer.stats).toEqual({ appends: 0, events: 0 });

    // The log is back: later submits go out and resolve.
    const later = outcomeOf(committer.submit(claim('a', 1)));
    await nextTick();
    expect(log.appends).toHaveLength(2);
    expect(log.appends[1]).toEqual([claim('a', 1)]);
    log.next().resolve();
    await drainMicrotasks();
    expect(later.state).toBe('resolved');
    expect(committer.stats).toEqual({ appends: 1, events: 1 });
  });

  it('fails a submit without onFailure with UnavailableError too, and leaves an earlier durable batch untouched', async () => {
    const log = new ControlledLog(true);
    const committer = new GroupCommitter(log, 2);
    const durable = [outcomeOf(committer.submit(claim('a', 1))), outcomeOf(committer.submit(claim('a', 2)))];
    const doomed = [outcomeOf(committer.submit(claim('a', 3))), outcomeOf(committer.submit(claim('a', 4)))];
    await nextTick();
    log.next().resolve();
    await drainMicrotasks();
    expect(durable.map((outcome) => outcome.state)).toEqual(['resolved', 'resolved']);
    await nextTick();
    expect(log.appends).toHaveLength(2);
    log.next().reject(new Error('disk full'));
    await drainMicrotasks();
    expect(doomed.map((outcome) => outcome.state)).toEqual(['rejected', 'rejected']);
    for (const outcome of doomed) expect(outcome.error).toBeInstanceOf(UnavailableError);
    expect(durable.map((outcome) => outcome.state)).toEqual(['resolved', 'resolved']);
  });

  it('with a pause after each append, what is submitted during it waits, and goes out together once it is over', async () => {
    const log = new ControlledLog(false);
    const committer = new GroupCommitter(log, BATCH_EVENTS_MAX, 40);
    await committer.submit(claim('p', 1));
    const firstDoneAt = performance.now();
    expect(log.appends).toHaveLength(1);
    const later = [committer.submit(claim('p', 2)), committer.submit(claim('p', 3))];
    await nextTick();
    committer.submit(claim('p', 4));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(log.appends).toHaveLength(1); // resting
    await Promise.all(later);
    expect(performance.now() - firstDoneAt).toBeGreaterThanOrEqual(35);
    expect(log.appends.map((events) => events.map((event) => (event as ClaimEvent).seq))).toEqual([[1], [2, 3, 4]]);
  });
});
