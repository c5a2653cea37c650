// The ledger scales out: consumers of one group share the topic's partitions, each applying its
// own in its own transaction stream. Proves, against the real Kafka broker and Postgres server:
// every (re)assignment starts at the positions stored at that moment, so a partition handed over
// is neither read again nor skipped; a consumer stuck in a batch past its session loses its
// partitions and its late commit changes nothing; the records without events that transactions
// leave (commit and abort markers, aborted records) move the stored position to the partition's
// end, and aborted claims are never booked; concurrent batches that share wallets take the
// accounts' locks in one order, so they never deadlock.
// Every test has its own topic and database.
import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { AssignerProtocol, Kafka, logLevel, type Admin } from 'kafkajs';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, rowsOf, type Database, type Db } from '../../src/ledger/database.js';
import { applyBatch, LedgerConsumer, type AppliedBatch } from '../../src/ledger/ledger-consumer.js';
import { storeSentPacket } from '../../src/ledger/packet-store.js';
import { reconcile } from '../../src/ledger/reconciliation.js';
import { deposit } from '../../src/ledger/wallets.js';
import type { ClaimEvent, ExpireEvent } from '../../src/log/events.js';
import { KafkaLog, SKIPPED_POSITION_ATTEMPTS, type KafkaLogLogger } from '../../src/log/kafka-log.js';
import { freshServerDatabase } from '../support/server-database.js';

const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',').map((broker) => broker.trim()).filter(Boolean);
const baseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
// Errors only: a rebalance and a consumer evicted mid-batch log warnings by design.
const logger = pino({ level: 'error' });
const nowMs = 1_700_000_000_000;
const SHARES = 20;
const SHARE_FEN = 50;

const kafka = new Kafka({
  clientId: 'hongbao-test-ledger-scaling',
  brokers,
  connectionTimeout: 3_000,
  requestTimeout: 5_000,
  retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1_000, factor: 0.2, multiplier: 2 },
  logLevel: logLevel.NOTHING,
});
let admin: Admin;
const topics: string[] = [];
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  admin = kafka.admin();
  await admin.connect();
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 5_000 }).catch(() => {});
  await admin.disconnect();
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

/** A log on a topic of this run, opened the way compose.ts opens it (group `<topic>.ledger`); one Kafka client each. */
async function openLog(topic: string, partitions: number, clientId: string, logTo: KafkaLogLogger = logger): Promise<KafkaLog> {
  if (!topics.includes(topic)) topics.push(topic);
  const log = await KafkaLog.open({ brokers, topic, partitions, clientId, groupId: `${topic}.ledger`, logger: logTo });
  cleanups.push(() => log.close());
  return log;
}

const newTopic = () => `hongbao-test-scaling-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;

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

/** Shares `from..to` of every packet, interleaved as a crowd would produce them. */
function claimsFor(ids: readonly string[], from: number, to: number): ClaimEvent[] {
  const events: ClaimEvent[] = [];
  for (let seq = from; seq <= to; seq += 1) for (const packetId of ids) events.push(claim(packetId, seq));
  return events;
}

async function storedPositions(db: Db): Promise<Map<number, bigint>> {
  const rows = await rowsOf<{ partition: number; next_offset: string }>(db, sql`select partition, next_offset::text from log_positions where log = 'kafka'`);
  return new Map(rows.map((row) => [row.partition, BigInt(row.next_offset)]));
}

async function highWatermarks(topic: string): Promise<Map<number, bigint>> {
  return new Map((await admin.fetchTopicOffsets(topic)).map((offset) => [offset.partition, BigInt(offset.high)]));
}

/** Waits until the stored position of every partition with records equals its high watermark. */
async function untilStoredAtHighWatermarks(db: Db, topic: string, timeoutMs = 10_000): Promise<Map<number, bigint>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [stored, high] = [await storedPositions(db), await highWatermarks(topic)];
    if ([...high].every(([partition, offset]) => offset === 0n || stored.get(partition) === offset)) return stored;
    if (Date.now() >= deadline) {
      throw new Error(`stored positions ${JSON.stringify([...stored].map(String))} never reached the high watermarks ${JSON.stringify([...high].map(String))}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Σ wallets and Σ escrow against what was deposited, claims booked, and the reconciliation's findings. */
async function books(database: Database, log: KafkaLog) {
  const rows = await rowsOf<{ kind: string; sum: string }>(database.db, sql`select kind, sum(balance_fen)::text as sum from accounts group by kind`);
  const of = (kind: string) => BigInt(rows.find((row) => row.kind === kind)?.sum ?? 0);
  const claims = await rowsOf<{ count: string; distinct_ids: string }>(
    database.db,
    sql`select count(*)::text as count, count(distinct packet_id || ':' || seq)::text as distinct_ids from claims`,
  );
  const report = await reconcile(database.db, log);
  return {
    wallets: of('wallet'),
    escrow: of('escrow'),
    deposited: -of('external'),
    claims: Number(claims[0]!.count),
    distinctClaims: Number(claims[0]!.distinct_ids),
    discrepancies: report.discrepancies,
  };
}

async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() >= deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** One transactional producer (as the engine's appends use) writing to one partition; each write is one transaction. */
async function transactionalWriter(topic: string, partition: number) {
  const producer = kafka.producer({ transactionalId: `${topic}-writer`, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  cleanups.push(() => producer.disconnect());
  return async (events: readonly ClaimEvent[], outcome: 'commit' | 'abort') => {
    const transaction = await producer.transaction();
    await transaction.send({ topic, acks: -1, messages: events.map((event) => ({ key: event.packetId, value: JSON.stringify(event), partition })) });
    await (outcome === 'commit' ? transaction.commit() : transaction.abort());
  };
}

/** Waits until the group is stable with exactly these clients, each assigned partitions of the topic; returns who holds what. */
async function untilGroupShared(groupId: string, topic: string, clientIds: readonly string[], timeoutMs = 30_000): Promise<Map<string, number[]>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { groups } = await admin.describeGroups([groupId]);
    const group = groups[0];
    if (group?.state === 'Stable' && group.members.length === clientIds.length) {
      const held = new Map(
        group.members.map((member) => [member.clientId, AssignerProtocol.MemberAssignment.decode(member.memberAssignment)?.assignment[topic] ?? []]),
      );
      if (clientIds.every((clientId) => (held.get(clientId)?.length ?? 0) > 0)) return held;
    }
    if (Date.now() >= deadline) throw new Error(`group ${groupId} never shared ${topic} among ${clientIds.join(', ')}: ${JSON.stringify(group)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * The database as one consumer sees it, its first transaction held at a gate the test opens
 * (BEGIN sent, no statement yet). `arrived` resolves once it waits, `settled` once it committed
 * or failed after open().
 */
function gatedDatabase(db: Db) {
  let open: () => void = () => {};
  const gate = new Promise<void>((resolve) => (open = resolve));
  let waiting: () => void = () => {};
  const arrived = new Promise<void>((resolve) => (waiting = resolve));
  let settle: (outcome: 'committed' | 'failed') => void = () => {};
  const settled = new Promise<'committed' | 'failed'>((resolve) => (settle = resolve));
  let started = 0;
  const transaction: Db['transaction'] = (work, config) => {
    started += 1;
    if (started > 1) return db.transaction(work, config);
    const held = db.transaction(async (tx) => {
      waiting();
      await gate;
      return work(tx);
    }, config);
    held.then(() => settle('committed'), () => settle('failed'));
    return held;
  };
  const gated = new Proxy(db, {
    get(target, property) {
      if (property === 'transaction') return transaction;
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { db: gated, arrived, settled, open: () => open() };
}

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

describe('consumers sharing the partitions', () => {
  it('two consumers of the group each apply a share at the same time; a stop mid-stream hands its partitions over, nothing lost or read twice', async () => {
    const topic = newTopic();
    const database = await freshDatabase();
    const [firstClient, secondClient] = ['hongbao-test-ledger-a', 'hongbao-test-ledger-b'];
    const firstLog = await openLog(topic, 4, firstClient);
    const secondLog = await openLog(topic, 4, secondClient);
    const ids = await sendPackets(database.db, 'share', 40);
    expect(new Set(ids.map((id) => firstLog.partitionOf(id))).size).toBe(4);
    // Each consumer's first batch waits until the other's has begun too: both in a transaction at once.
    const firstGate = gatedDatabase(database.db);
    const secondGate = gatedDatabase(database.db);
    void Promise.all([firstGate.arrived, secondGate.arrived]).then(() => {
      firstGate.open();
      secondGate.open();
    });
    const first = new LedgerConsumer(firstGate.db, firstLog);
    const second = new LedgerConsumer(secondGate.db, secondLog);
    await first.start();
    cleanups.push(() => first.stop());
    await second.start();
    cleanups.push(() => second.stop());
    const held = await untilGroupShared(`${topic}.ledger`, topic, [firstClient, secondClient]);
    expect([...held.values()].flat().sort()).toEqual([0, 1, 2, 3]);

    await firstLog.append(claimsFor(ids, 1, 10));
    await second.waitAppliedAll(await firstLog.heads(), 20_000);
    expect(first.appliedEvents).toBeGreaterThan(0);
    expect(second.appliedEvents).toBeGreaterThan(0);

    // Mid-stream: the first stops while claims for its partitions are still arriving.
    await firstLog.append(claimsFor(ids, 11, 14));
    await first.stop();
    for (let seq = 15; seq <= SHARES; seq += 1) await firstLog.append(claimsFor(ids, seq, seq));
    await second.waitAppliedAll(await firstLog.heads(), 30_000);

    const total = ids.length * SHARES;
    // Each event applied once: the partitions handed over started where the first had stored them.
    expect(first.appliedEvents + second.appliedEvents).toBe(total);
    const state = await books(database, firstLog);
    expect(state.claims).toBe(total);
    expect(state.distinctClaims).toBe(total);
    expect(state.escrow).toBe(0n);
    expect(state.wallets).toBe(state.deposited);
    expect(state.discrepancies).toEqual([]);
    expect(first.conflicts + second.conflicts).toBe(0);
  });

  it('a consumer stuck in a batch past its session loses its partitions; its late commit of that batch changes nothing', async () => {
    const topic = newTopic();
    const database = await freshDatabase();
    const [stuckClient, rescuerClient] = ['hongbao-test-ledger-stuck', 'hongbao-test-ledger-rescuer'];
    const stuckLog = await openLog(topic, 2, stuckClient);
    const rescuerLog = await openLog(topic, 2, rescuerClient);
    const ids = await sendPackets(database.db, 'zombie', 10);
    const gate = gatedDatabase(database.db);
    const stuck = new LedgerConsumer(gate.db, stuckLog);
    await stuck.start();
    cleanups.push(() => stuck.stop());
    await untilGroupShared(`${topic}.ledger`, topic, [stuckClient]);
    await stuckLog.append(claimsFor(ids, 1, SHARES / 2));
    await gate.arrived;
    // The rescuer will store positions past the stuck batch: the late commit must not move them back.
    await stuckLog.append(claimsFor(ids, SHARES / 2 + 1, SHARES));

    // The stuck one neither heartbeats nor rejoins: after the rebalance timeout the rescuer holds
    // every partition, from the positions stored then (the stuck batch's are not among them).
    const rescuer = new LedgerConsumer(database.db, rescuerLog);
    await rescuer.start();
    cleanups.push(() => rescuer.stop());
    await rescuer.waitAppliedAll(await stuckLog.heads(), 40_000);
    const before = { books: await books(database, stuckLog), positions: await storedPositions(database.db) };
    expect(before.books.claims).toBe(ids.length * SHARES);
    expect(before.books.discrepancies).toEqual([]);

    // The stuck batch goes on and commits what the rescuer already booked: a double application.
    gate.open();
    expect(await gate.settled).toBe('committed');
    const after = { books: await books(database, stuckLog), positions: await storedPositions(database.db) };
    await until(() => stuck.appliedEvents > 0);
    expect(after).toEqual(before);
    expect(stuck.conflicts + rescuer.conflicts).toBe(0);
  });
});

describe('transactions on the topic', () => {
  it('commit markers and aborted transactions move the stored position to the high watermark; aborted claims are never booked', async () => {
    const topic = newTopic();
    const database = await freshDatabase();
    const log = await openLog(topic, 2, 'hongbao-test-markers');
    const [packet] = await sendPackets(database.db, 'tx', 1);
    const partition = log.partitionOf(packet!);
    const write = await transactionalWriter(topic, partition);
    const applied: AppliedBatch[] = [];
    const consumer = new LedgerConsumer(database.db, log, { onApplied: (batch) => applied.push(batch) });
    await consumer.start();
    cleanups.push(() => consumer.stop());
    try {
      await write([claim(packet!, 1), claim(packet!, 2)], 'commit');
      await untilStoredAtHighWatermarks(database.db, topic);
      // Read alone, an aborted transaction is a fetch with nothing left after filtering: kafkajs
      // never calls eachBatch for it. The position must still move past it and its marker.
      await write([claim(packet!, 3), claim(packet!, 4)], 'abort');
      await untilStoredAtHighWatermarks(database.db, topic);
      await write([claim(packet!, 5)], 'commit');
      await write([claim(packet!, 6)], 'abort');
      const stored = await untilStoredAtHighWatermarks(database.db, topic);
      expect(stored.get(partition)).toBe((await highWatermarks(topic)).get(partition));
      // What the engine waits for before it activates a packet returns on this idle partition.
      await consumer.waitAppliedAll(await log.heads(), 5_000);

      const booked = await rowsOf<{ seq: number }>(database.db, sql`select seq from claims where packet_id = ${packet!} order by seq`);
      expect(booked.map((row) => row.seq)).toEqual([1, 2, 5]);
      expect(applied.flatMap((batch) => batch.claims.map((event) => event.seq))).toEqual([1, 2, 5]);
      const state = await books(database, log);
      expect(state.discrepancies).toEqual([]);
      expect(state.wallets + state.escrow).toBe(state.deposited);
      expect(state.escrow).toBe(BigInt((SHARES - 3) * SHARE_FEN));
    } finally {
      await consumer.stop();
    }
  });

  it('a position past records without events is tried a bounded number of times, logged, then read again until it is stored', async () => {
    const topic = newTopic();
    const said: { level: 'warn' | 'error'; message: string }[] = [];
    const capture: KafkaLogLogger = {
      warn: (_details, message) => void said.push({ level: 'warn', message }),
      error: (_details, message) => void said.push({ level: 'error', message }),
    };
    const log = await openLog(topic, 1, 'hongbao-test-markers-retry', capture);
    const write = await transactionalWriter(topic, 0);
    let failures = 0;
    const reached: bigint[] = [];
    const subscription = await log.subscribe([], async (batch) => {
      if (batch.events.length === 0 && failures <= SKIPPED_POSITION_ATTEMPTS) {
        failures += 1;
        throw new Error('simulated database outage');
      }
      for (const position of batch.positions) reached.push(BigInt(position.nextOffset));
    });
    try {
      await write([claim('retry', 1)], 'commit');
      await until(() => reached.length === 1);
      await write([claim('retry', 2)], 'abort');
      const high = (await highWatermarks(topic)).get(0)!;
      await until(() => reached.at(-1) === high);
      expect(failures).toBe(SKIPPED_POSITION_ATTEMPTS + 1);
      const skipped = said.filter((entry) => entry.message.startsWith('storing the position past records without events failed'));
      expect(skipped.map((entry) => entry.level)).toEqual([...Array<'warn'>(SKIPPED_POSITION_ATTEMPTS - 1).fill('warn'), 'error', 'warn']);
    } finally {
      await subscription.stop();
    }
  });
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
