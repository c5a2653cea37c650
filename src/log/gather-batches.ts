// One ledger transaction for the batches of many partitions. kafkajs hands each partition's
// fetched records to eachBatch apart: at 3,000 claims/s over 8 partitions that is ~25 events a
// batch, and a Postgres transaction each (measured: 645 transactions for 16,000 claims, ~0.5 ms of
// ledger time per claim). Batches that arrive in the same turn of the event loop, or while
// `streams` groups are being applied, go to the handler together, as one batch with each
// partition's position; each caller hears the group's outcome. Each partition's events stay in
// order and together (kafkajs never hands one partition's next batch before this one is done).
import type { LogBatch } from './event-log.js';

export function gatherBatches(handler: (batch: LogBatch) => Promise<void>, streams: number): (batch: LogBatch) => Promise<void> {
  let waiting: { batch: LogBatch; resolve: () => void; reject: (error: unknown) => void }[] = [];
  let applying = 0;
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (applying >= streams || waiting.length === 0) return;
    const group = waiting;
    waiting = [];
    applying += 1;
    const combined: LogBatch = { events: group.flatMap((entry) => entry.batch.events), positions: group.flatMap((entry) => entry.batch.positions) };
    handler(combined)
      .then(
        () => group.forEach((entry) => entry.resolve()),
        (error: unknown) => group.forEach((entry) => entry.reject(error)),
      )
      .finally(() => {
        applying -= 1;
        schedule();
      });
  };
  // setImmediate: after the microtasks of this turn, where kafkajs starts every partition of a fetch.
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(flush);
  };
  return (batch) =>
    new Promise<void>((resolve, reject) => {
      waiting.push({ batch, resolve, reject });
      schedule();
    });
}
