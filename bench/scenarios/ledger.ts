// Scenario 3, ledger: the consumer applying claims into the Postgres server (batched, one
// transaction per batch, bulk statements). (a) backlog: claims/s draining a full log;
// (b) live: claims fed at a fixed rate, lag sampled while it runs.
import { sql } from 'drizzle-orm';
import { openDatabase, rowsOf } from '../../src/ledger/database.js';
import { LedgerConsumer } from '../../src/ledger/ledger-consumer.js';
import { storeSentPacket } from '../../src/ledger/packet-store.js';
import { deposit } from '../../src/ledger/wallets.js';
import type { ClaimEvent } from '../../src/log/events.js';
import { MemoryLog } from '../../src/log/memory-log.js';
import { freshServerDatabase } from '../../test/support/server-database.js';
import { emit, percentile, quick } from '../support.js';

const baseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const server = await freshServerDatabase(baseUrl);
const database = await openDatabase({ url: server.url, dataDir: 'memory' });
const nowMs = Date.now();

async function sendPackets(prefix: string, count: number): Promise<string[]> {
  await deposit(database.db, 'sender', count * 10_000, `${prefix}-funds`);
  const ids: string[] = [];
  for (let index = 0; index < count; index += 1) {
    const id = `${prefix}${index}`;
    await database.db.transaction((tx) =>
      storeSentPacket(tx, {
        id, type: 'group_fixed', senderId: 'sender', targetId: 'g', count: 100, totalFen: 10_000, greeting: '',
        members: null, createdAtMs: nowMs, liveAtMs: nowMs, expiresAtMs: nowMs + 86_400_000,
      }),
    );
    ids.push(id);
  }
  return ids;
}

function claimsFor(ids: readonly string[]): ClaimEvent[] {
  const events: ClaimEvent[] = [];
  // Interleaved as a crowd would produce them: share k of every packet, then share k+1.
  for (let seq = 1; seq <= 100; seq += 1) {
    for (const packetId of ids) events.push({ kind: 'claim', packetId, seq, userId: `u${seq}`, amountFen: 100, atMs: nowMs + seq });
  }
  return events;
}

async function backlog(packets: number) {
  const events = claimsFor(await sendPackets('a', packets));
  const log = new MemoryLog();
  await log.append(events);
  const consumer = new LedgerConsumer(database.db, log);
  const started = performance.now();
  await consumer.start();
  await consumer.waitAppliedAll(await log.heads(), 600_000);
  const elapsedMs = performance.now() - started;
  await consumer.stop();
  return { claims: events.length, claimsPerSecond: (events.length / elapsedMs) * 1000 };
}

async function live(packets: number, ratePerSecond: number) {
  const events = claimsFor(await sendPackets('b', packets));
  await database.db.execute(sql`delete from log_positions`);
  const log = new MemoryLog();
  const consumer = new LedgerConsumer(database.db, log);
  await consumer.start();
  const lags: number[] = [];
  const started = performance.now();
  let appended = 0;
  while (appended < events.length) {
    const due = Math.min(events.length, Math.floor(((performance.now() - started) / 1000) * ratePerSecond));
    if (due > appended) await log.append(events.slice(appended, due));
    appended = due;
    lags.push(appended - Number(consumer.appliedPosition(0)));
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await consumer.waitAppliedAll(await log.heads(), 600_000);
  const drainedMs = performance.now() - started;
  await consumer.stop();
  lags.sort((left, right) => left - right);
  return {
    offeredPerSecond: ratePerSecond,
    claims: events.length,
    lagEventsP50: percentile(lags, 0.5),
    lagEventsP99: percentile(lags, 0.99),
    lagEventsMax: lags[lags.length - 1],
    lagMsP99: (percentile(lags, 0.99) / ratePerSecond) * 1000,
    drainedMs,
  };
}

try {
  const backlogResult = await backlog(quick ? 500 : 2_000);
  const liveResult = await live(quick ? 200 : 1_000, 20_000);
  const check = await rowsOf<{ sum: string }>(database.db, sql`select sum(balance_fen)::text as sum from accounts`);
  if (Number(check[0]?.sum) !== 0) throw new Error('the book does not balance after the run');
  emit({ scenario: 'ledger', backlog: backlogResult, live: liveResult });
} finally {
  await database.close();
  await server.drop();
}
