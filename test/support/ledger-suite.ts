// One ledger suite, run against every database (PGlite, Postgres server): transfers are
// idempotent by id, sending checks the balance atomically, the consumer applies a batch
// once even when replayed, and reconciliation finds a broken book.
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { InvariantError } from '../../src/domain/errors.js';
import type { Packet } from '../../src/domain/packet.js';
import { rowsOf, type Database } from '../../src/ledger/database.js';
import { LedgerConsumer } from '../../src/ledger/ledger-consumer.js';
import { loadStoredPacket, storeSentPacket } from '../../src/ledger/packet-store.js';
import { reconcile } from '../../src/ledger/reconciliation.js';
import { postTransfers } from '../../src/ledger/transfers.js';
import { deposit, walletBalance } from '../../src/ledger/wallets.js';
import type { ClaimEvent, PacketEvent } from '../../src/log/events.js';
import { MemoryLog } from '../../src/log/memory-log.js';

export interface DatabaseUnderTest {
  readonly database: Database;
  cleanup(): Promise<void>;
}

const packetOf = (id: string, senderId: string, totalFen: number, count: number): Packet => ({
  id, type: 'group_lucky', senderId, targetId: 'g1', count, totalFen, greeting: 'hi', members: null,
  createdAtMs: Date.UTC(2026, 5, 1), liveAtMs: Date.UTC(2026, 5, 1), expiresAtMs: Date.UTC(2026, 5, 2),
});

const claim = (packetId: string, seq: number, userId: string, amountFen: number): ClaimEvent => ({
  kind: 'claim', packetId, seq, userId, amountFen, atMs: Date.UTC(2026, 5, 1) + seq * 1000,
});

async function book(database: Database) {
  const rows = await rowsOf<{ sum: string | number | null }>(database.db, sql`select sum(balance_fen) as sum from accounts`);
  return Number(rows[0]?.sum ?? 0);
}

async function send(database: Database, packet: Packet) {
  return database.db.transaction((tx) => storeSentPacket(tx, packet));
}

/** Runs the consumer over the given events until it applied them all. */
async function consume(database: Database, log: MemoryLog, events: PacketEvent[]) {
  await log.append(events);
  const consumer = new LedgerConsumer(database.db, log);
  await consumer.start();
  await consumer.waitAppliedAll(await log.heads(), 10_000);
  await consumer.stop();
}

export function describeLedger(name: string, open: () => Promise<DatabaseUnderTest>): void {
  describe(`ledger: ${name}`, () => {
    it('posts a transfer once per id, keeps Σ balances = 0, and rejects an id reused with other terms', async () => {
      const { database, cleanup } = await open();
      try {
        expect(await deposit(database.db, 'alice', 10_000, 'ref-1')).toBe(10_000);
        expect(await deposit(database.db, 'alice', 10_000, 'ref-1')).toBe(10_000);
        expect(await deposit(database.db, 'alice', 500, 'ref-2')).toBe(10_500);
        expect(await book(database)).toBe(0);
        await expect(
          postTransfers(database.db, [{ id: 'deposit:ref-1', debitAccountId: 'external:deposits', creditAccountId: 'wallet:alice', amountFen: 1 }]),
        ).rejects.toThrow(InvariantError);
        await expect(
          postTransfers(database.db, [{ id: 'bad', debitAccountId: 'external:deposits', creditAccountId: 'wallet:alice', amountFen: 0 }]),
        ).rejects.toThrow(InvariantError);
        expect(await walletBalance(database.db, 'alice')).toBe(10_500);
      } finally {
        await cleanup();
      }
    });

    it('sends only with enough balance, atomically', async () => {
      const { database, cleanup } = await open();
      try {
        await deposit(database.db, 'bob', 1_000, 'bob-1');
        expect(await send(database, packetOf('pk-short', 'bob', 1_001, 1))).toMatchObject({ ok: false, reason: 'insufficient_balance' });
        expect(await loadStoredPacket(database.db, 'pk-short')).toBeNull();
        expect(await walletBalance(database.db, 'bob')).toBe(1_000);
        // Two sends racing on one wallet: only one of them fits.
        const results = await Promise.all([send(database, packetOf('pk-a', 'bob', 600, 2)), send(database, packetOf('pk-b', 'bob', 600, 2))]);
        expect(results.filter((result) => result.ok)).toHaveLength(1);
        expect(await walletBalance(database.db, 'bob')).toBe(400);
        expect(await book(database)).toBe(0);
      } finally {
        await cleanup();
      }
    });

    it('applies claims and a refund once, even when the log is replayed from the start', async () => {
      const { database, cleanup } = await open();
      try {
        await deposit(database.db, 'carol', 10_000, 'carol-1');
        expect((await send(database, packetOf('pk-c', 'carol', 1_000, 3))).ok).toBe(true);
        const log = new MemoryLog();
        const events: PacketEvent[] = [
          claim('pk-c', 1, 'dan', 300),
          claim('pk-c', 2, 'erin', 200),
          claim('pk-c', 1, 'dan', 300), // a producer retry: the same event twice
          { kind: 'expire', packetId: 'pk-c', senderId: 'carol', refundFen: 500, atMs: Date.UTC(2026, 5, 2) },
        ];
        await consume(database, log, events);
        // A crash before the position was stored: the consumer reads everything again.
        await database.db.execute(sql`delete from log_positions`);
        await consume(database, new MemoryLog(), events);

        expect(await walletBalance(database.db, 'dan')).toBe(300);
        expect(await walletBalance(database.db, 'erin')).toBe(200);
        expect(await walletBalance(database.db, 'carol')).toBe(10_000 - 1_000 + 500);
        const stored = await loadStoredPacket(database.db, 'pk-c');
        expect(stored?.expired).toBe(true);
        expect(stored?.claims.map((row) => [row.seq, row.userId, row.amountFen])).toEqual([[1, 'dan', 300], [2, 'erin', 200]]);
        expect(await book(database)).toBe(0);
        const report = await reconcile(database.db);
        expect(report.discrepancies).toEqual([]);
        expect(report.checkedPackets).toBe(1);
      } finally {
        await cleanup();
      }
    });

    it('finishes a packet when its last share is applied and records the best luck', async () => {
      const { database, cleanup } = await open();
      try {
        await deposit(database.db, 'fay', 1_000, 'fay-1');
        await send(database, packetOf('pk-f', 'fay', 900, 3));
        await consume(database, new MemoryLog(), [claim('pk-f', 1, 'g1', 400), claim('pk-f', 2, 'g2', 400), claim('pk-f', 3, 'g3', 100)]);
        const rows = await rowsOf<{ status: string; best_seq: number; claimed_count: number }>(
          database.db,
          sql`select status, best_seq, claimed_count from packets where id = 'pk-f'`,
        );
        expect(rows[0]).toMatchObject({ status: 'finished', best_seq: 1, claimed_count: 3 });
        expect((await reconcile(database.db)).discrepancies).toEqual([]);
      } finally {
        await cleanup();
      }
    });

    it('reports a broken book', async () => {
      const { database, cleanup } = await open();
      try {
        await deposit(database.db, 'gus', 1_000, 'gus-1');
        await send(database, packetOf('pk-g', 'gus', 500, 2));
        await database.db.execute(sql`update accounts set balance_fen = balance_fen + 7 where id = 'wallet:gus'`);
        await database.db.execute(sql`update packets set status = 'expired', refund_fen = 1 where id = 'pk-g'`);
        const report = await reconcile(database.db);
        expect(report.discrepancies.map((item) => `${item.kind}:${item.id}`).sort()).toEqual(['account:wallet:gus', 'book:all', 'packet:pk-g']);
      } finally {
        await cleanup();
      }
    });
  });
}
