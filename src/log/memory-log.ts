// In-memory EventLog for unit tests and simulation only: nothing survives the process.
import { readStartPositions, type EventLog, type LogBatch, type LogPosition, type StartPositions, type Subscription } from './event-log.js';
import type { PacketEvent } from './events.js';
import { READ_BATCH_EVENTS_MAX } from './table-log.js';

export class MemoryLog implements EventLog {
  readonly name = 'memory';
  readonly events: PacketEvent[] = [];
  /** Set to make the next appends fail, to simulate an unreachable log. */
  failAppends = false;
  private wake: (() => void) | undefined;

  async append(events: readonly PacketEvent[]): Promise<void> {
    if (this.failAppends) throw new Error('memory log: append refused (simulated outage)');
    for (const event of events) this.events.push(event);
    this.wake?.();
  }

  async subscribe(from: StartPositions, handler: (batch: LogBatch) => Promise<void>): Promise<Subscription> {
    let next = Number((await readStartPositions(from)).find((position) => position.partition === 0)?.nextOffset ?? '0');
    let running = true;
    const loop = async () => {
      while (running) {
        if (next >= this.events.length) {
          await new Promise<void>((resolve) => {
            this.wake = resolve;
            setTimeout(resolve, 20);
          });
          continue;
        }
        const events = this.events.slice(next, next + READ_BATCH_EVENTS_MAX);
        try {
          await handler({ events, positions: [{ partition: 0, nextOffset: String(next + events.length) }] });
          next += events.length;
        } catch (error) {
          // The handler stored nothing (it reports its own failure): deliver the same events again.
          if (!(error instanceof Error)) throw error;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
    };
    const done = loop();
    return {
      stop: async () => {
        running = false;
        this.wake?.();
        await done;
      },
    };
  }

  async headFor(): Promise<LogPosition> {
    return { partition: 0, nextOffset: String(this.events.length) };
  }

  async heads(): Promise<LogPosition[]> {
    return [await this.headFor()];
  }

  async scan(until: readonly LogPosition[], visit: (events: readonly PacketEvent[]) => Promise<void> | void): Promise<void> {
    const end = Math.min(Number(until.find((position) => position.partition === 0)?.nextOffset ?? '0'), this.events.length);
    for (let next = 0; next < end; next += READ_BATCH_EVENTS_MAX) {
      await visit(this.events.slice(next, Math.min(next + READ_BATCH_EVENTS_MAX, end)));
    }
  }

  async close(): Promise<void> {}
}
