// Expiry: every packet still live PACKET_TTL_MS after it went live is closed through its
// actor, which refunds the exact remainder once. Driven by the database's deadlines, so a
// restart (or a missed tick) only delays it by one interval, never loses or doubles it.
import type { Engine } from '../engine/engine.js';
import type { Clock } from '../engine/clock.js';

export const EXPIRY_INTERVAL_MS = 1_000;
export const EXPIRY_BATCH_MAX = 500;

export interface PeriodicJob {
  /** Runs one pass now; resolves when it is done. */
  runOnce(): Promise<void>;
  stop(): Promise<void>;
}

/** Runs `pass` every intervalMs, never two at once; errors go to onError and the next tick retries. */
export function every(intervalMs: number, pass: () => Promise<void>, onError: (error: unknown) => void): PeriodicJob {
  let running: Promise<void> = Promise.resolve();
  let stopped = false;
  const runOnce = () => {
    running = running.then(pass).catch(onError);
    return running;
  };
  const timer = setInterval(() => {
    if (!stopped) void runOnce();
  }, intervalMs);
  timer.unref();
  return {
    runOnce,
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}

/** Packets still live at `nowMs` past their deadline, oldest first, at most `limit`. */
export type DuePackets = (nowMs: number, limit: number) => Promise<string[]>;

export function expiryPass(duePackets: DuePackets, engine: Engine, clock: Clock): () => Promise<void> {
  return async () => {
    const due = await duePackets(clock.now(), EXPIRY_BATCH_MAX);
    // All at once: the group committer turns them into a handful of appends.
    const results = await Promise.allSettled(due.map((packetId) => engine.expire(packetId)));
    const failed = results.find((result) => result.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  };
}
