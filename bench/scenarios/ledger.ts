// Scenario 3, ledger: the consumer applying claims into the Postgres server (batched, one
// transaction per batch, bulk statements). (a) backlog: claims/s draining a full log;
// (b) live: claims fed at a fixed rate, lag sampled while it runs; (c) consumers: one Kafka
// backlog applied by 1 and by 2 consumer processes of one group, each applying the batches of
// PARTITIONS_CONSUMED_CONCURRENTLY partitions at once and, for comparison, one at a time, each
// case into its own copy of the same database, in interleaved rounds. `--consumer …` runs this
// file as one such consumer process. By hand: `--consumers-only` runs part (c) alone, with
// `--packets` (2,000: 200,000 claims), `--rounds` (3) and `--users` (50,000).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import { AssignerProtocol, Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { pino } from 'pino';
import { openDatabase, rowsOf, type Db } from '../../src/ledger/database.js';
import { LedgerConsumer } from '../../src/ledger/ledger-consumer.js';
import { storeSentPacket } from '../../src/ledger/packet-store.js';
import { deposit } from '../../src/ledger/wallets.js';
import type { ClaimEvent } from '../../src/log/events.js';
import { KafkaLog, PARTITIONS_CONSUMED_CONCURRENTLY } from '../../src/log/kafka-log.js';
import { MemoryLog } from '../../src/log/memory-log.js';
import { freshServerDatabase } from '../../test/support/server-database.js';
import { argument, emit, median, percentile, quick } from '../support.js';

const baseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',').map((broker) => broker.trim()).filter(Boolean);
const nowMs = Date.now();
const SHARES = 100;
/** Part (c): partitions of the backlog's topic (the default KAFKA_PARTITIONS). */
const PARTITIONS = 8;
/**
 * Part (c): openers are drawn from this many users (`--users` to change it), so batches of
 * different partitions rarely credit the same wallet at once (parts a and b keep their 100
 * users, one per share number).
 */
const CROWD_USERS = argument('users', 50_000);
const APPEND_EVENTS_MAX = 5_000;

const option = (name: string): string => {
  const index = process.argv.indexOf(`--${name}`);
  const value = index >= 0 ? process.argv[index + 1] : undefined;
  if (value === undefined) throw new Error(`--${name} is required`);
  return value;
};

async function sendPackets(db: Db, prefix: string, count: number): Promise<string[]> {
  await deposit(db, 'sender', count * 10_000, `${prefix}-funds`);
  const ids: string[] = [];
  for (let index = 0; index < count; index += 1) {
    const id = `${prefix}${index}`;
    await db.transaction((tx) =>
      storeSentPacket(tx, {
        id, type: 'group_fixed', senderId: 'sender', targetId: 'g', count: SHARES, totalFen: 10_000, greeting: '',
        members: null, createdAtMs: nowMs, liveAtMs: nowMs, expiresAtMs: nowMs + 86_400_000,
      }),
    );
    ids.push(id);
  }
  return ids;
}

/** Interleaved as a crowd would produce them: share k of every packet, then share k+1. */
function claimsFor(ids: readonly string[], userOf: (packet: number, seq: number) => string = (_packet, seq) => `u${seq}`): ClaimEvent[] {
  const events: ClaimEvent[] = [];
  for (let seq = 1; seq <= SHARES; seq += 1) {
    ids.forEach((packetId, packet) => events.push({ kind: 'claim', packetId, seq, userId: userOf(packet, seq), amountFen: 100, atMs: nowMs + seq }));
  }
  return events;
}

// ---- (a) and (b): one consumer on an in-memory log, into one database

async function backlog(db: Db, packets: number) {
  const events = claimsFor(await sendPackets(db, 'a', packets));
  const log = new MemoryLog();
  await log.append(events);
  const consumer = new LedgerConsumer(db, log);
  const started = performance.now();
  await consumer.start();
  await consumer.waitAppliedAll(await log.heads(), 600_000);
  const elapsedMs = performance.now() - started;
  await consumer.stop();
  return { claims: events.length, claimsPerSecond: (events.length / elapsedMs) * 1000 };
}

async function live(db: Db, packets: number, ratePerSecond: number) {
  const events = claimsFor(await sendPackets(db, 'b', packets));
  await db.execute(sql`delete from log_positions`);
  const log = new MemoryLog();
  const consumer = new LedgerConsumer(db, log);
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

// ---- (c): consumer processes sharing a Kafka topic's partitions

/** One consumer process: applies the topic into the database until its stdin closes, then reports. */
async function consumerProcess(): Promise<void> {
  const database = await openDatabase({ url: option('database'), dataDir: 'memory' });
  const log = await KafkaLog.open({
    brokers,
    topic: option('topic'),
    partitions: PARTITIONS,
    clientId: option('client'),
    groupId: option('group'),
    logger: pino({ level: 'error' }),
    partitionsConsumedConcurrently: Number(option('concurrency')),
  });
  const consumer = new LedgerConsumer(database.db, log);
  await consumer.start();
  process.stdout.write('started\n');
  // "mark" when the measured window opens; stdin's end when it closed.
  let mark = process.cpuUsage();
  const input = createInterface({ input: process.stdin });
  input.on('line', (line) => line === 'mark' && (mark = process.cpuUsage()));
  await new Promise<void>((resolve) => input.once('close', resolve));
  const cpu = process.cpuUsage(mark);
  await consumer.stop();
  await log.close();
  await database.close();
  emit({ appliedEvents: consumer.appliedEvents, failedBatches: consumer.failedBatches, cpuMs: (cpu.user + cpu.system) / 1000 });
}

/** CPU time (ms) used so far by the whole machine, and by each of the given processes, from /proc. */
function cpuSnapshot(pids: readonly number[] = []) {
  const ticksPerSecond = 100;
  const [, ...fields] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  const values = fields.map(Number);
  const idle = values[3]! + values[4]!;
  const total = values.reduce((sum, value) => sum + value, 0);
  const byPid = new Map<number, number>();
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      byPid.set(pid, ((Number(rest[11]) + Number(rest[12])) / ticksPerSecond) * 1000);
    } catch {
      // The process ended meanwhile.
    }
  }
  return { busyMs: ((total - idle) / ticksPerSecond) * 1000, byPid };
}

/** The Postgres backends serving a database now. */
async function backendsOf(client: pg.Client): Promise<number[]> {
  const { rows } = await client.query<{ pid: number }>(`select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`);
  return rows.map((row) => row.pid);
}

/**
 * A client whose lost connection (another user of the machine restarting Postgres) fails the
 * query in progress, so the run fails and cleans up, rather than killing the process unheard.
 */
function client(url: string): pg.Client {
  const created = new pg.Client({ connectionString: url });
  created.on('error', (error) => process.stderr.write(`[ledger] database connection lost: ${error.message}\n`));
  return created;
}

interface ConsumersCase {
  readonly label: string;
  readonly consumers: number;
  readonly concurrency: number;
}

async function consumers(packets: number, rounds: number) {
  const run = `${process.pid}-${Date.now().toString(36)}`;
  const topic = `hongbao-bench-ledger-${run}`;
  const kafka = new Kafka({ clientId: `hongbao-bench-${run}`, brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  // The same packets in every copy: a template database, copied per run.
  const template = await freshServerDatabase(baseUrl);
  const templateName = new URL(template.url).pathname.slice(1);
  const copies: string[] = [];
  const server = client(baseUrl);
  await server.connect();
  const log = await KafkaLog.open({ brokers, topic, partitions: PARTITIONS, clientId: `hongbao-bench-${run}`, groupId: `${topic}.unused`, logger: pino({ level: 'error' }) });
  try {
    const seeded = await openDatabase({ url: template.url, dataDir: 'memory' });
    const ids = await sendPackets(seeded.db, 'k', packets);
    const deposited = packets * 10_000;
    await seeded.close();
    // Spread over many users, as a crowd is: user of (packet, share) drawn without a pattern.
    const events = claimsFor(ids, (packet, seq) => `c${(packet * 7_919 + seq * 104_729) % CROWD_USERS}`);
    for (let index = 0; index < events.length; index += APPEND_EVENTS_MAX) await log.append(events.slice(index, index + APPEND_EVENTS_MAX));
    const heads = await log.heads();

    // As configured (PARTITIONS_CONSUMED_CONCURRENTLY batches at once per consumer), and with one at a time.
    const cases: ConsumersCase[] = [
      { label: '1 consumer', consumers: 1, concurrency: PARTITIONS_CONSUMED_CONCURRENTLY },
      { label: '2 consumers', consumers: 2, concurrency: PARTITIONS_CONSUMED_CONCURRENTLY },
      { label: '1 consumer, 1 batch at a time', consumers: 1, concurrency: 1 },
      { label: '2 consumers, 1 batch at a time each', consumers: 2, concurrency: 1 },
    ];
    const results = new Map<string, Awaited<ReturnType<typeof measureConsumers>>[]>();
    for (let round = 0; round < rounds; round += 1) {
      // Interleaved, the order turned every round: the machine's drift falls on every case alike.
      const order = round % 2 === 0 ? cases : [...cases].reverse();
      for (const entry of order) {
        const name = `${templateName}_r${round}_${entry.consumers}x${entry.concurrency}`;
        await server.query(`create database ${name} template ${templateName}`);
        copies.push(name);
        const url = new URL(template.url);
        url.pathname = `/${name}`;
        const outcome = await measureConsumers({ admin, topic, url: url.toString(), group: `${topic}.ledger.${name}`, entry, heads, total: events.length, deposited });
        results.set(entry.label, [...(results.get(entry.label) ?? []), outcome]);
        process.stderr.write(`[ledger] round ${round + 1}/${rounds}, ${entry.label}: ${Math.round(outcome.claimsPerSecond)} claims/s ${JSON.stringify(outcome)}\n`);
        await server.query(`drop database ${name} with (force)`);
        copies.splice(copies.indexOf(name), 1);
      }
    }
    const summary = cases.map((entry) => {
      const runs = results.get(entry.label)!;
      const middle = [...runs].sort((left, right) => left.claimsPerSecond - right.claimsPerSecond)[Math.floor(runs.length / 2)]!;
      return { ...entry, claimsPerSecond: median(runs.map((outcome) => outcome.claimsPerSecond)), runs: runs.map((outcome) => outcome.claimsPerSecond), median: middle };
    });
    const rate = (label: string) => summary.find((entry) => entry.label === label)!.claimsPerSecond;
    return {
      claims: events.length,
      partitions: PARTITIONS,
      users: CROWD_USERS,
      rounds,
      cases: summary,
      batchesAtOnce: PARTITIONS_CONSUMED_CONCURRENTLY,
      ratioTwoConsumers: rate('2 consumers') / rate('1 consumer'),
      ratioTwoConsumersOneBatchAtATime: rate('2 consumers, 1 batch at a time each') / rate('1 consumer, 1 batch at a time'),
      ratioBatchesAtOnce: rate('1 consumer') / rate('1 consumer, 1 batch at a time'),
    };
  } finally {
    await log.close();
    await admin.deleteTopics({ topics: [topic], timeout: 5_000 }).catch(() => {});
    await admin.disconnect();
    for (const name of copies) await server.query(`drop database if exists ${name} with (force)`).catch(() => {});
    await server.end();
    await template.drop();
  }
}

async function measureConsumers(options: {
  admin: ReturnType<Kafka['admin']>;
  topic: string;
  url: string;
  group: string;
  entry: ConsumersCase;
  heads: readonly { partition: number; nextOffset: string }[];
  total: number;
  deposited: number;
}) {
  const { admin, topic, url, group, entry, heads, total, deposited } = options;
  // Held until every consumer holds its partitions, so the clock starts with all of them ready:
  // each (re)assignment reads the stored positions first, and that read waits for this lock.
  const gate = client(url);
  await gate.connect();
  await gate.query('begin');
  await gate.query('lock table log_positions in access exclusive mode');
  const children: ChildProcess[] = [];
  const reports: Promise<{ appliedEvents: number; failedBatches: number; cpuMs: number }>[] = [];
  try {
    for (let index = 0; index < entry.consumers; index += 1) {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', fileURLToPath(import.meta.url), '--consumer', '--database', url, '--topic', topic, '--group', group,
          '--client', `${group}-${index}`, '--concurrency', String(entry.concurrency)],
        { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, KAFKAJS_NO_PARTITIONER_WARNING: '1' } },
      );
      children.push(child);
      const lines = createInterface({ input: child.stdout! });
      const started = new Promise<void>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`consumer process exited with ${code} before it started`)));
        lines.on('line', (line) => line === 'started' && resolve());
      });
      reports.push(
        new Promise((resolve, reject) => {
          let last = '';
          lines.on('line', (line) => (last = line));
          child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(last)) : reject(new Error(`consumer process exited with ${code}`))));
        }),
      );
      await started;
    }
    await untilAssigned(admin, group, topic, entry.consumers);
    const database = client(url);
    await database.connect();
    const backendsBefore = (await backendsOf(database)).filter((pid) => pid !== (gate as unknown as { processID: number }).processID);
    const cpuBefore = cpuSnapshot(backendsBefore);
    for (const child of children) child.stdin!.write('mark\n');
    const started = performance.now();
    await gate.query('commit');
    try {
      for (;;) {
        const { rows } = await database.query<{ partition: number; next_offset: string }>(`select partition, next_offset::text from log_positions`);
        const stored = new Map(rows.map((row) => [row.partition, BigInt(row.next_offset)]));
        if (heads.every((head) => BigInt(head.nextOffset) === 0n || stored.get(head.partition) === BigInt(head.nextOffset))) break;
        if (performance.now() - started > 600_000) throw new Error('the consumers did not reach the heads within 10 minutes');
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      const elapsedMs = performance.now() - started;
      const backends = [...new Set([...backendsBefore, ...(await backendsOf(database))])];
      const cpuAfter = cpuSnapshot(backends);
      const loadAverage = loadavg()[0]!;
      for (const child of children) child.stdin!.end();
      // Verified, or not reported: every claim booked once, every escrow empty, the book balanced, no conflict.
      const { rows } = await database.query<{ claims: string; escrow: string; wallets: string; book: string; conflicts: string }>(`
        select (select count(*) from claims)::text as claims,
               (select coalesce(sum(balance_fen), 0) from accounts where kind = 'escrow')::text as escrow,
               (select coalesce(sum(balance_fen), 0) from accounts where kind = 'wallet')::text as wallets,
               (select coalesce(sum(balance_fen), 0) from accounts)::text as book,
               (select count(*) from ledger_conflicts)::text as conflicts`);
      const check = rows[0]!;
      if (Number(check.claims) !== total || check.escrow !== '0' || Number(check.wallets) !== deposited || check.book !== '0' || check.conflicts !== '0') {
        throw new Error(`${entry.label}: the books do not verify: ${JSON.stringify(check)}`);
      }
      const applied = await Promise.all(reports);
      if (applied.reduce((sum, report) => sum + report.appliedEvents, 0) !== total) {
        throw new Error(`${entry.label}: ${JSON.stringify(applied)} applied, not ${total} events once each`);
      }
      // Percent of one core over the window: this database's Postgres backends (a backend that
      // started in the window counts from its start), the consumer processes, the whole machine.
      const percent = (ms: number) => Math.round((ms / elapsedMs) * 100);
      const postgresMs = backends.reduce((sum, pid) => sum + (cpuAfter.byPid.get(pid) ?? 0) - (cpuBefore.byPid.get(pid) ?? 0), 0);
      const cpu = {
        postgres: percent(postgresMs),
        consumers: percent(applied.reduce((sum, report) => sum + report.cpuMs, 0)),
        machine: percent(cpuAfter.busyMs - cpuBefore.busyMs),
      };
      return { claimsPerSecond: (total / elapsedMs) * 1000, elapsedMs, shares: applied.map((report) => report.appliedEvents), cpu, loadAverage };
    } finally {
      await database.end();
    }
  } finally {
    await gate.query('rollback').catch(() => {});
    await gate.end();
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  }
}

/** Waits until the group is stable with this many members, each assigned some of the topic's partitions. */
async function untilAssigned(admin: ReturnType<Kafka['admin']>, group: string, topic: string, members: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const description = (await admin.describeGroups([group])).groups[0];
    const assigned = (description?.members ?? []).map((member) => AssignerProtocol.MemberAssignment.decode(member.memberAssignment)?.assignment[topic] ?? []);
    if (description?.state === 'Stable' && assigned.length === members && assigned.every((partitions) => partitions.length > 0)) return;
    if (Date.now() >= deadline) throw new Error(`group ${group} never had ${members} members sharing ${topic}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function main(): Promise<void> {
  const server = await freshServerDatabase(baseUrl);
  const database = await openDatabase({ url: server.url, dataDir: 'memory' });
  try {
    const only = process.argv.includes('--consumers-only');
    const backlogResult = only ? undefined : await backlog(database.db, quick ? 500 : 2_000);
    const liveResult = only ? undefined : await live(database.db, quick ? 200 : 1_000, 20_000);
    const check = await rowsOf<{ sum: string | null }>(database.db, sql`select sum(balance_fen)::text as sum from accounts`);
    if (Number(check[0]?.sum ?? 0) !== 0) throw new Error('the book does not balance after the run');
    const consumersResult = await consumers(argument('packets', quick ? 300 : 2_000), argument('rounds', quick ? 1 : 3));
    emit({ scenario: 'ledger', backlog: backlogResult, live: liveResult, consumers: consumersResult });
  } finally {
    await database.close();
    await server.drop();
  }
}

if (process.argv.includes('--consumer')) {
  await consumerProcess();
  process.exit(0);
} else {
  await main();
}
