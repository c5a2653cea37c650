// The partitions' batches of one fetch meet in one handler call (one ledger transaction).
import { describe, expect, it } from 'vitest';
import type { LogBatch } from '../../src/log/event-log.js';
import { gatherBatches } from '../../src/log/gather-batches.js';

const batchOf = (partition: number, seqs: number[]): LogBatch => ({
  events: seqs.map((seq) => ({ kind: 'claim', packetId: `p${partition}`, seq, userId: `u${seq}`, amountFen: 1, atMs: 0 })),
  positions: [{ partition, nextOffset: String(seqs.length) }],
});

describe('gatherBatches', () => {
  it('batches handed over in one turn go to the handler as one, each partition in order and whole', async () => {
    const calls: LogBatch[] = [];
    const apply = gatherBatches(async (batch) => void calls.push(batch), 2);
    await Promise.all([apply(batchOf(0, [1, 2])), apply(batchOf(1, [1])), apply(batchOf(2, [1, 2, 3]))]);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.positions.map((position) => position.partition)).toEqual([0, 1, 2]);
    expect(calls[0]!.events.map((event) => `${event.packetId}:${(event as { seq: number }).seq}`)).toEqual(['p0:1', 'p0:2', 'p1:1', 'p2:1', 'p2:2', 'p2:3']);
  });

  it('with every stream busy, what arrives waits and goes in the next group; a failure reaches each caller of its group', async () => {
    const calls: LogBatch[] = [];
    let release: () => void = () => {};
    const apply = gatherBatches(async (batch) => {
      calls.push(batch);
      if (calls.length === 1) await new Promise<void>((resolve) => (release = resolve));
      if (calls.length === 2) throw new Error('the database went away');
    }, 1);
    const first = apply(batchOf(0, [1]));
    await new Promise((resolve) => setImmediate(resolve));
    const second = apply(batchOf(1, [1]));
    const third = apply(batchOf(2, [1]));
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls).toHaveLength(1); // one stream, still busy
    release();
    await first;
    await expect(second).rejects.toThrow('went away');
    await expect(third).rejects.toThrow('went away');
    expect(calls).toHaveLength(2);
    expect(calls[1]!.positions.map((position) => position.partition)).toEqual([1, 2]);
  });
});
