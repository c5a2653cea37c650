// One conformance suite for every EventLog implementation (as hono runs one router suite
// against every router): durable append, per-packet order, resume from a position,
// redelivery after a failed handler, heads that cover everything appended, and a scan of the
// history that reads every partition from its start up to the given positions, exclusive.
import { describe, expect, it } from 'vitest';
import type { EventLog, LogBatch, LogPosition } from '../../src/log/event-log.js';
import type { ClaimEvent, PacketEvent } from '../../src/log/events.js';

export interface LogUnderTest {
  readonly log: EventLog;
  /** A second handle on the same log, as a restarted process would open it. */
  reopen(): Promise<EventLog>;
  cleanup(): Promise<void>;
}

const claim = (packetId: string, seq: number): ClaimEvent => ({
  kind: 'claim', packetId, seq, userId: `u${seq}`, amountFen: seq * 10, atMs: 1_700_000_000_000 + seq,
});

/** Collects events until `count` arrived; returns them with the last positions seen per partition. */
async function collect(log: EventLog, from: readonly LogPosition[], count: number, timeoutMs = 30_000) {
  const events: PacketEvent[] = [];
  const positions = new Map<number, string>();
  let finish: () => void = () => {};
  const done = new Promise<void>((resolve) => (finish = resolve));
  const subscription = await log.subscribe(from, async (batch: LogBatch) => {
    events.push(...batch.events);
    for (const position of batch.positions) positions.set(position.partition, position.nextOffset);
    if (events.length >= count) finish();
  });
  const timer = setTimeout(finish, timeoutMs);
  await done;
  clearTimeout(timer);
  await subscription.stop();
  return { events, positions: [...positions].map(([partition, nextOffset]) => ({ partition, nextOffset })) };
}

const byPacket = (events: readonly PacketEvent[]) => {
  const grouped = new Map<string, number[]>();
  for (const event of events) if (event.kind === 'claim') grouped.set(event.packetId, [...(grouped.get(event.packetId) ?? []), event.seq]);
  return grouped;
};

export function describeEventLog(name: string, open: () => Promise<LogUnderTest>): void {
  describe(`EventLog conformance: ${name}`, () => {
    it('delivers every appended event, each packet in its order, with positions that reach the heads', async () => {
      const under = await open();
      try {
        const prefix = `p${Date.now().toString(36)}`;
        for (let round = 0; round < 5; round += 1) {
          const batch: PacketEvent[] = [];
          for (let packet = 0; packet < 10; packet += 1) batch.push(claim(`${prefix}-${packet}`, round + 1));
          await under.log.append(batch);
        }
        await under.log.append([{ kind: 'expire', packetId: `${prefix}-0`, senderId: 's', refundFen: 5, atMs: 1 }]);
        const { events, positions } = await collect(under.log, [], 51);
        const mine = events.filter((event) => event.packetId.startsWith(prefix));
        expect(mine).toHaveLength(51);
        for (const [, seqs] of byPacket(mine)) expect(seqs).toEqual([1, 2, 3, 4, 5]);
        expect(mine.filter((event) => event.packetId === `${prefix}-0`).at(-1)).toMatchObject({ kind: 'expire', refundFen: 5 });
        // Order is promised per packet only (a partitioned log interleaves packets freely).
        expect(mine.find((event) => event.packetId === `${prefix}-0`)).toEqual(claim(`${prefix}-0`, 1));

        const heads = await under.log.heads();
        for (const head of heads) {
          const reached = positions.find((position) => position.partition === head.partition);
          if (BigInt(head.nextOffset) > 0n) expect(reached && BigInt(reached.nextOffset)).toBe(BigInt(head.nextOffset));
        }
        const head = await under.log.headFor(`${prefix}-3`);
        expect(heads.some((position) => position.partition === head.partition && position.nextOffset === head.nextOffset)).toBe(true);
      } finally {
        await under.cleanup();
      }
    });

    it('resumes after a stored position and is durable across a reopen', async () => {
      const under = await open();
      try {
        const prefix = `r${Date.now().toString(36)}`;
        await under.log.append([claim(`${prefix}-a`, 1), claim(`${prefix}-a`, 2)]);
        const first = await collect(under.log, [], 2);
        await under.log.append([claim(`${prefix}-a`, 3)]);
        const reopened = await under.reopen();
        const rest = await collect(reopened, first.positions, 1);
        const mine = rest.events.filter((event) => event.packetId === `${prefix}-a`);
        expect(mine.map((event) => (event as ClaimEvent).seq)).toEqual([3]);
        if (reopened !== under.log) await reopened.close();
      } finally {
        await under.cleanup();
      }
    });

    it('scans the history up to the given positions, exclusive, each packet in its order', async () => {
      const under = await open();
      try {
        const prefix = `s${Date.now().toString(36)}`;
        const appended: PacketEvent[] = [];
        for (let round = 1; round <= 3; round += 1) for (let packet = 0; packet < 6; packet += 1) appended.push(claim(`${prefix}-${packet}`, round));
        await under.log.append(appended);
        const heads = await under.log.heads();
        await under.log.append([claim(`${prefix}-0`, 4)]); // after the heads: must not be read

        const scanned: PacketEvent[] = [];
        let visits = 0;
        await under.log.scan(heads, async (events) => {
          visits += 1;
          scanned.push(...events);
        });
        const mine = scanned.filter((event) => event.packetId.startsWith(prefix));
        expect(mine).toHaveLength(appended.length);
        expect(mine).toEqual(expect.arrayContaining(appended));
        for (const [, seqs] of byPacket(mine)) expect(seqs).toEqual([1, 2, 3]);
        expect(visits).toBeGreaterThan(0);

        const nothing: PacketEvent[] = [];
        await under.log.scan([], (events) => void nothing.push(...events));
        expect(nothing).toEqual([]);

        // A second handle reads the same history.
        const reopened = await under.reopen();
        const again: PacketEvent[] = [];
        await reopened.scan(await reopened.heads(), (events) => void again.push(...events));
        expect(again.filter((event) => event.packetId.startsWith(prefix))).toHaveLength(appended.length + 1);
        if (reopened !== under.log) await reopened.close();
      } finally {
        await under.cleanup();
      }
    });

    it('redelivers a batch whose handler failed', async () => {
      const under = await open();
      try {
        const prefix = `f${Date.now().toString(36)}`;
        await under.log.append([claim(`${prefix}-x`, 1)]);
        let failures = 0;
        const seen: PacketEvent[] = [];
        let finish: () => void = () => {};
        const done = new Promise<void>((resolve) => (finish = resolve));
        const subscription = await under.log.subscribe([], async (batch) => {
          if (batch.events.some((event) => event.packetId === `${prefix}-x`) && failures < 2) {
            failures += 1;
            throw new Error('simulated ledger failure');
          }
          seen.push(...batch.events);
          if (seen.some((event) => event.packetId === `${prefix}-x`)) finish();
        });
        const timer = setTimeout(finish, 30_000);
        await done;
        clearTimeout(timer);
        await subscription.stop();
        expect(failures).toBe(2);
        expect(seen.filter((event) => event.packetId === `${prefix}-x`)).toHaveLength(1);
      } finally {
        await under.cleanup();
      }
    });
  });
}
