// Runs the ledger conformance suite against the real ledger (LedgerConsumer over a table log)
// on PGlite, and on the Postgres server when DATABASE_URL is set; plus what only the real one
// has: the posting function's error channel, the packet columns the consumer writes, and the
// consumer's conflict counter and callback.
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { InvariantError } from '../../src/domain/errors.js';
import { openTestDatabase } from '../support/pglite-template.js';
import { openDatabase, rowsOf, type Database } from '../../src/ledger/database.js';
import { DatabaseLedger } from '../support/database-ledger.js';
import { LedgerConsumer, type LedgerConflict } from '../../src/ledger/ledger-consumer.js';
import { storeSentPacket } from '../../src/ledger/packet-store.js';
import { postTransfers, TransferConflictError } from '../../src/ledger/transfers.js';
import { deposit, walletBalance } from '../../src/ledger/wallets.js';
import { TableLog } from '../../src/log/table-log.js';
import { claim, describeLedger, packetOf, type LedgerUnderTest } from '../support/ledger-suite.js';
import { freshServerDatabase } from '../support/server-database.js';

const CATCH_UP_TIMEOUT_MS = 10_000;

async function realLedger(database: Database, dropDatabase: () => Promise<void>): Promise<LedgerUnderTest> {
  const log = new TableLog(database.db);
  const ledger = new DatabaseLedger(database, log);
  await ledger.start();
  return {
    ledger,
    replayFromStart: async () => {
      await ledger.stop();
      await database.db.execute(sql`delete from log_positions`);
      const consumer = await ledger.start();
      await consumer.waitAppliedAll(await log.heads(), CATCH_UP_TIMEOUT_MS);
    },
    skipInLog: async (events) => {
      await ledger.stop();
      await log.append(events);
      for (const head of await log.heads()) {
        await database.db.execute(sql`
          insert into log_positions (log, partition, next_offset) values (${log.name}, ${head.partition}, ${head.nextOffset}::bigint)
          on conflict (log, partition) do update set next_offset = excluded.next_offset`);
      }
      await ledger.start();
    },
    corruptBalance: async (userId, deltaFen) => {
      await database.db.execute(sql`update accounts set balance_fen = balance_fen + ${deltaFen} where id = ${`wallet:${userId}`}`);
    },
    closeWithoutRefund: async (packetId, refundFen) => {
      await database.db.execute(sql`update packets set status = 'expired', refund_fen = ${refundFen} where id = ${packetId}`);
    },
    cleanup: async () => {
      await ledger.stop();
      await database.close();
      await dropDatabase();
    },
  };
}

type OpenDatabase = () => Promise<{ database: Database; drop: () => Promise<void> }>;

const pglite: OpenDatabase = async () => ({ database: await openTestDatabase(), drop: async () => {} });
const server: OpenDatabase = async () => {
  const fresh = await freshServerDatabase(process.env.DATABASE_URL!);
  return { database: await openDatabase({ url: fresh.url, dataDir: 'memory' }), drop: () => fresh.drop() };
};

function describeRealLedger(name: string, openDb: OpenDatabase): void {
  describeLedger(name, async () => {
    const { database, drop } = await openDb();
    return realLedger(database, drop);
  });

  describe(`ledger (real only): ${name}`, () => {
    it('postTransfers throws for an id reused with other terms or a non-positive amount', async () => {
      const { database, drop } = await openDb();
      try {
        expect(await deposit(database.db, 'alice', 10_000, 'ref-1')).toBe(10_000);
        const reused = postTransfers(database.db, [{ id: 'deposit:ref-1', debitAccountId: 'external:deposits', creditAccountId: 'wallet:alice', amountFen: 1 }]);
        await expect(reused).rejects.toThrow(InvariantError);
        await expect(reused).rejects.toBeInstanceOf(TransferConflictError);
        await expect(reused).rejects.toThrow(/exists_with_different_amount/);
        await expect(
          postTransfers(database.db, [{ id: 'bad', debitAccountId: 'external:deposits', creditAccountId: 'wallet:alice', amountFen: 0 }]),
        ).rejects.toThrow(InvariantError);
        expect(await walletBalance(database.db, 'alice')).toBe(10_000);
      } finally {
        await database.close();
        await drop();
      }
    });

    it('records the best luck when a lucky packet finishes', async () => {
      const { database, drop } = await openDb();
      const under = await realLedger(database, drop);
      try {
        await under.ledger.depositTo('fay', 1_000, 'fay-1');
        await under.ledger.sendPacket(packetOf('pk-f', 'fay', 900, 3));
        await under.ledger.applyEvents([claim('pk-f', 1, 'g1', 400), claim('pk-f', 2, 'g2', 400), claim('pk-f', 3, 'g3', 100)]);
        const rows = await rowsOf<{ status: string; best_seq: number; claimed_count: number }>(
          database.db,
          sql`select status, best_seq, claimed_count from packets where id = 'pk-f'`,
        );
        expect(rows[0]).toMatchObject({ status: 'finished', best_seq: 1, claimed_count: 3 });
      } finally {
        await under.cleanup();
      }
    });

    it('counts each new conflict once, calls onConflict after the commit, and never fails the batch', async () => {
      const { database, drop } = await openDb();
      const log = new TableLog(database.db);
      const seen: LedgerConflict[] = [];
      const consumerOf = () => new LedgerConsumer(database.db, log, { onConflict: (conflict) => seen.push(conflict) });
      try {
        await deposit(database.db, 'hal', 1_000, 'hal-1');
        await database.db.transaction((tx) => storeSentPacket(tx, packetOf('pk-h', 'hal', 900, 3)));
        await log.append([claim('pk-h', 1, 'ida', 300), claim('pk-h', 1, 'ida', 301), claim('pk-h', 2, 'ida', 200), claim('pk-h', 2, 'jo', 200)]);
        const first = consumerOf();
        await first.start();
        await first.waitAppliedAll(await log.heads(), CATCH_UP_TIMEOUT_MS);
        await first.stop();
        expect(first.conflicts).toBe(2);
        expect(first.failedBatches).toBe(0);
        expect(seen.map((conflict) => conflict.code)).toEqual(['exists_with_different_amount', 'user_already_claimed_other_seq']);
        const stored = await rowsOf<{ id: string; code: string }>(database.db, sql`select id, code from ledger_conflicts order by id`);
        expect(stored.map((row) => row.id).sort()).toEqual(seen.map((conflict) => conflict.id).sort());

        // Replayed from the start: the same conflicts are met, none is new.
        await database.db.execute(sql`delete from log_positions`);
        const second = consumerOf();
        await second.start();
        await second.waitAppliedAll(await log.heads(), CATCH_UP_TIMEOUT_MS);
        await second.stop();
        expect(second.conflicts).toBe(0);
        expect(seen).toHaveLength(2);
        expect(await walletBalance(database.db, 'ida')).toBe(300);
        expect(await walletBalance(database.db, 'jo')).toBe(200);
      } finally {
        await database.close();
        await drop();
      }
    });
  });
}

describeRealLedger('PGlite', pglite);
if (process.env.DATABASE_URL) describeRealLedger('Postgres server', server);
