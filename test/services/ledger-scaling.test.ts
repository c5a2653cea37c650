// Ledger batches of different partitions run at once (several consumers) and may share wallets.
// Proves, on the Postgres server, that they take their accounts' locks in one order, so they
// never deadlock. Every test has its own database.
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase, rowsOf, type Database, type Db } from '../../src/ledger/database.js';
import { applyBatch } from '../../src/ledger/ledger-consumer.js';
import { storeSentPacket } from '../../src/ledger/packet-store.js';
import { deposit } from '../../src/ledger/wallets.js';
import type { ClaimEvent, ExpireEvent } from '../../src/log/events.js';
import { freshServerDatabase } from '../support/server-database.js';

const baseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const nowMs = 1_700_000_000_000;
const SHARES = 20;
const SHARE_FEN = 50;
const cleanups: (() => Promise<void>)[] = [];

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

/** A fresh database on the server, dropped after the file. */
async function freshDatabase(): Promise<Database> {
  const server = await freshServerDatabase(baseUrl);
  const database = await openDatabase({ url: server.url, dataDir: 'memory' });
  cleanups.push(async () => {
    await database.close();
    await server.drop();
  });
  return database;
}

/** Packets of SHARES fixed shares each, sent by one funded sender. */
async function sendPackets(db: Db, prefix: string, count: number): Promise<string[]> {
  await deposit(db, `${prefix}-sender`, count * SHARES * SHARE_FEN, `${prefix}-funds`);
  const ids: string[] = [];
  for (let index = 0; index < count; index += 1) {
    const id = `${prefix}-${index}`;
    await db.transaction((tx) =>
      storeSentPacket(tx, {
        id, type: 'group_fixed', senderId: `${prefix}-sender`, targetId: 'g', count: SHARES, totalFen: SHARES * SHARE_FEN,
        greeting: '', members: null, createdAtMs: nowMs, liveAtMs: nowMs, expiresAtMs: nowMs + 86_400_000,
      }),
    );
    ids.push(id);
  }
  return ids;
}

const claim = (packetId: string, seq: number): ClaimEvent => ({
  kind: 'claim', packetId, seq, userId: `u${seq}`, amountFen: SHARE_FEN, atMs: nowMs + seq,
});

describe('ledger batches running at once', () => {
  it('take the locks of every account they touch in account order, so batches sharing wallets cannot deadlock', async () => {
    const database = await freshDatabase();
    const [claimed, expired] = await sendPackets(database.db, 'lock', 2);
    await deposit(database.db, 'zed', 1, 'zed-funds');
    // Another batch (a partition of its own) that credits the same two wallets, in account order:
    // the refunded sender's first, then zed's. It holds the first while this batch runs.
    const serverUrl = new URL(baseUrl);
    serverUrl.pathname = `/${await currentDatabase(database.db)}`;
    const other = new pg.Client({ connectionString: serverUrl.toString() });
    const monitor = new pg.Client({ connectionString: serverUrl.toString() });
    await other.connect();
    await monitor.connect();
    try {
      await other.query('begin');
      await other.query(`select id from accounts where id = 'wallet:lock-sender' for update`);
      // This batch: zed claims a share of one packet, the other packet expires and refunds its sender.
      const expire: ExpireEvent = { kind: 'expire', packetId: expired!, senderId: 'lock-sender', refundFen: SHARES * SHARE_FEN, atMs: nowMs + 1 };
      const zedClaim: ClaimEvent = { ...claim(claimed!, 1), userId: 'zed' };
      const batch = database.db.transaction((tx) => applyBatch(tx, [zedClaim], [expire]));
      const outcome = batch.then(() => 'committed', (error: unknown) => `failed: ${((error as Error).cause as Error | undefined)?.message ?? (error as Error).message}`);
      // Once it waits for the sender's wallet, the other batch takes zed's.
      await untilWaitingForLock(monitor);
      await other.query(`select id from accounts where id = 'wallet:zed' for update`);
      await other.query('commit');
      expect(await outcome).toBe('committed');
      const balances = await rowsOf<{ id: string; balance_fen: string }>(
        database.db,
        sql`select id, balance_fen::text from accounts where id in ('wallet:zed', 'wallet:lock-sender', ${`escrow:${expired}`}) order by id`,
      );
      expect(balances.map((row) => [row.id, row.balance_fen])).toEqual([
        [`escrow:${expired}`, '0'],
        ['wallet:lock-sender', String(SHARES * SHARE_FEN)],
        ['wallet:zed', String(1 + SHARE_FEN)],
      ]);
    } finally {
      await other.end();
      await monitor.end();
    }
  });
});

async function currentDatabase(db: Db): Promise<string> {
  return (await rowsOf<{ name: string }>(db, sql`select current_database() as name`))[0]!.name;
}

/** Waits until a session of this database waits for a lock. */
async function untilWaitingForLock(monitor: pg.Client, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { rows } = await monitor.query(`select count(*)::int as waiting from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`);
    if (rows[0].waiting > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('no session started waiting for a lock');
}
