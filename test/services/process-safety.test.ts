// Proves that processes sharing one Postgres server cannot step on each other: two starts
// racing on a new database both migrate it (the advisory lock serializes them); a missing
// database is one line with the createdb command; of two engine processes on one log only the
// holder of the engine lock serves opens, the other stays unready naming the holder and takes
// over when the holder is killed, and no packet hands out more shares than it has; a holder
// whose lock connection is cut stops at once instead of serving without the lock.
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/ledger/database.js';
import { CRASH_SECRET, call } from '../support/crash-scenario.js';
import { runUntilExit, startServer, type ServerProcess } from '../support/process.js';
import { freshServerDatabase } from '../support/server-database.js';

const running: ServerProcess[] = [];
const cleanups: (() => Promise<void>)[] = [];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

afterEach(async (context) => {
  if (context.task.result?.state === 'fail') for (const server of running) console.error(server.output().slice(-3000));
  await Promise.all(running.splice(0).map((server) => server.kill('SIGKILL')));
  for (const cleanup of cleanups.splice(0)) await cleanup().catch(() => {});
});

/** A fresh database, and a fresh Kafka topic (or, with `log: 'table'`, the table log on the server). */
async function servicesEnv({ log = 'kafka' }: { log?: 'kafka' | 'table' } = {}) {
  const server = await freshServerDatabase(process.env.DATABASE_URL!);
  cleanups.push(server.drop);
  return {
    url: server.url,
    env: {
      AUTH_SECRET: CRASH_SECRET,
      SEED_SECRET: 'process-safety-seed',
      DATABASE_URL: server.url,
      KAFKA_BROKERS: log === 'kafka' ? process.env.KAFKA_BROKERS! : undefined,
      KAFKA_TOPIC: `hongbao-safety-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6)}`,
      KAFKA_PARTITIONS: '2',
    },
  };
}

async function readyz(url: string): Promise<{ status: number; body: any }> {
  const response = await fetch(`${url}/readyz`);
  return { status: response.status, body: await response.json() };
}

async function until<T>(attempt: () => Promise<T>, accept: (value: T) => boolean, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await attempt().catch((error: unknown) => error as T);
    if (accept(value) || Date.now() > deadline) return value;
    await sleep(200);
  }
}

describe('processes on one Postgres server', () => {
  it('two starts racing on a new database both migrate it, once', async () => {
    for (let round = 0; round < 2; round += 1) {
      const server = await freshServerDatabase(process.env.DATABASE_URL!);
      cleanups.push(server.drop);
      const opened = await Promise.allSettled([openDatabase({ url: server.url, dataDir: 'memory' }), openDatabase({ url: server.url, dataDir: 'memory' })]);
      for (const result of opened) if (result.status === 'fulfilled') await result.value.close();
      expect(opened.map((result) => (result.status === 'rejected' ? String(result.reason) : 'ok'))).toEqual(['ok', 'ok']);
      const client = new pg.Client({ connectionString: server.url });
      await client.connect();
      const { rows } = await client.query('select count(*)::int as count from drizzle.__drizzle_migrations');
      await client.end();
      const migrations = readdirSync(fileURLToPath(new URL('../../drizzle', import.meta.url))).filter((name) => name.endsWith('.sql'));
      expect(rows[0].count).toBe(migrations.length);
    }
  });

  it('a missing database is one line with the command that creates it', async () => {
    const url = new URL(process.env.DATABASE_URL!);
    const name = `hongbao_missing_${Date.now().toString(36)}`;
    url.pathname = `/${name}`;
    const result = await runUntilExit({ DATABASE_URL: url.toString() }, 30_000);
    expect(result.code).not.toBe(0);
    expect(result.stderr.trim()).toBe(`hongbao: database "${name}" does not exist; create it with: createdb -h ${url.hostname} -p ${url.port || '5432'} -U ${url.username} ${name}`);
  });

  it('of two engine processes on one table log only the lock holder serves opens; the standby takes over after a kill -9 and pays only what is left', async () => {
    const { env } = await servicesEnv({ log: 'table' });
    // The standby is ROLE=all: its ledger consumer books the log while it waits, so it can
    // rebuild every packet once it takes over.
    const holder = await startServer({ ...env, ROLE: 'engine' }, 120_000);
    running.push(holder);
    const standby = await startServer({ ...env, ROLE: 'all' }, 120_000, { until: 'listening' });
    running.push(standby);

    // The standby stays unready and names the holder, for as long as the holder lives.
    const waiting = await until(() => readyz(standby.url), (reply) => /standby/.test(reply.body?.error?.message ?? ''), 30_000);
    expect(waiting.status).toBe(503);
    expect(waiting.body.error.message).toContain(`engine:table is held by "hongbao engine`);
    expect(waiting.body.error.message).toContain(`pid ${holder.child.pid}"`);

    const shares = 5;
    expect((await call(holder.url, 'POST', '/v1/wallet/deposits', 'admin', { userId: 'sender', amount: '100.00' }, { 'idempotency-key': 'd1' })).status).toBe(201);
    const sent = await call(holder.url, 'POST', '/v1/packets', 'sender', { type: 'group_lucky', targetId: 'g', count: shares, amount: '10.00' }, { 'idempotency-key': 's1' });
    expect(sent.status).toBe(201);
    const packetId = sent.body.packet.id as string;

    // Opens go to both processes at once: the holder pays, the standby pays nobody.
    const firstCrowd = await Promise.all(
      Array.from({ length: 3 }, (_, index) => [
        call(holder.url, 'POST', `/v1/packets/${packetId}/open`, `h${index}`),
        call(standby.url, 'POST', `/v1/packets/${packetId}/open`, `s${index}`),
      ]).flat(),
    );
    const onHolder = firstCrowd.filter((_, index) => index % 2 === 0);
    const onStandby = firstCrowd.filter((_, index) => index % 2 === 1);
    for (const reply of onStandby) expect(reply).toMatchObject({ status: 503, body: { error: { code: 'unavailable' } } });
    for (const reply of onHolder) expect(reply.body.state).toBe('claimed');
    const seqs = onHolder.map((reply) => reply.body.seq as number);

    await holder.kill('SIGKILL');
    const tookOver = await until(() => readyz(standby.url), (reply) => reply.status === 200, 60_000);
    expect(tookOver.status).toBe(200);

    // The standby knows every claim the holder made and hands out only what is left.
    for (const [index, seq] of seqs.entries()) {
      const again = await call(standby.url, 'POST', `/v1/packets/${packetId}/open`, `h${index}`);
      expect(again.body).toMatchObject({ state: 'already_claimed', seq });
    }
    const rest = await Promise.all(Array.from({ length: 6 }, (_, index) => call(standby.url, 'POST', `/v1/packets/${packetId}/open`, `t${index}`)));
    const claimedAfter = rest.filter((reply) => reply.body.state === 'claimed');
    expect(rest.map((reply) => reply.body.state ?? reply.body.error?.code).sort()).toEqual(['claimed', 'claimed', 'sold_out', 'sold_out', 'sold_out', 'sold_out']);
    expect(claimedAfter.length).toBe(shares - seqs.length);
    expect(rest.filter((reply) => reply.body.state === 'sold_out').length).toBe(6 - claimedAfter.length);
    seqs.push(...claimedAfter.map((reply) => reply.body.seq as number));
    expect(seqs.sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5]);
  }, 240_000);

  it('two engine processes on one Kafka log both serve, and no share is ever handed out twice (5 packets × 10 shares, 100 openers over both)', async () => {
    // The reproduction: before slots, each process built its own actor per packet and
    // both handed out shares 1..10, so 100 users heard "claimed" for 50 shares.
    const { env, url } = await servicesEnv();
    const first = await startServer({ ...env, KAFKA_PARTITIONS: '4', NODE_ID: 'first', ROLE: 'all' }, 120_000);
    running.push(first);
    const second = await startServer({ ...env, KAFKA_PARTITIONS: '4', NODE_ID: 'second', ROLE: 'all' }, 120_000);
    running.push(second);
    const nodes = [first.url, second.url];
    expect((await call(first.url, 'POST', '/v1/wallet/deposits', 'admin', { userId: 'sender', amount: '100.00' }, { 'idempotency-key': 'd1' })).status).toBe(201);
    const packetIds: string[] = [];
    for (let index = 0; index < 5; index += 1) {
      const sent = await call(nodes[index % 2]!, 'POST', '/v1/packets', 'sender', { type: 'group_lucky', targetId: 'g', count: 10, amount: '10.00' }, { 'idempotency-key': `s${index}` });
      expect(sent.status).toBe(201);
      packetIds.push(sent.body.packet.id);
    }
    // Every user opens every packet once, alternating nodes, retrying an unavailable/busy answer.
    const acknowledged: { packetId: string; user: string; seq: number; amount: string }[] = [];
    const answers = new Map<string, number>();
    await Promise.all(
      Array.from({ length: 100 }, async (_, index) => {
        const user = `o${index}`;
        for (const [packetIndex, packetId] of packetIds.entries()) {
          for (let attempt = 0; attempt < 40; attempt += 1) {
            const reply = await call(nodes[(index + packetIndex + attempt) % 2]!, 'POST', `/v1/packets/${packetId}/open`, user);
            const state = reply.body.state ?? reply.body.error?.code;
            answers.set(state, (answers.get(state) ?? 0) + 1);
            if (state === 'claimed') acknowledged.push({ packetId, user, seq: reply.body.seq, amount: reply.body.amount });
            if (state !== 'unavailable' && state !== 'busy') break;
            await sleep(100);
          }
        }
      }),
    );
    expect(acknowledged.length, JSON.stringify([...answers])).toBe(50);
    for (const packetId of packetIds) {
      const mine = acknowledged.filter((claim) => claim.packetId === packetId);
      expect(mine.map((claim) => claim.seq).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      const total = mine.reduce((sum, claim) => sum + BigInt(Math.round(Number(claim.amount) * 100)), 0n);
      expect(total).toBe(1000n);
    }
    // Every acknowledged claim is booked with its amount and credited; the books balance.
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    try {
      const deadline = Date.now() + 30_000;
      let booked: { packet_id: string; user_id: string; amount_fen: string }[] = [];
      while (Date.now() < deadline) {
        booked = (await db.query('select packet_id, user_id, amount_fen::text as amount_fen from claims')).rows;
        if (booked.length >= 50) break;
        await sleep(200);
      }
      expect(booked.length).toBe(50);
      for (const claim of acknowledged) {
        expect(booked).toContainEqual({ packet_id: claim.packetId, user_id: claim.user, amount_fen: String(Math.round(Number(claim.amount) * 100)) });
      }
      const { rows } = await db.query("select coalesce(sum(balance_fen), 0)::text as total from accounts where kind = 'wallet' and id <> 'wallet:sender'");
      expect(rows[0].total).toBe('5000');
    } finally {
      await db.end();
    }
    const reconciled = await call(first.url, 'POST', '/v1/admin/reconcile', 'admin');
    expect(reconciled.body.discrepancies).toEqual([]);
  }, 240_000);

  it('a holder whose lock connection is cut exits at once with one line', async () => {
    const { env, url } = await servicesEnv({ log: 'table' });
    const holder = await startServer({ ...env, ROLE: 'engine' }, 120_000);
    running.push(holder);
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      // The fault: Postgres ends the session that holds the lock (as a failover or a cut would).
      const { rows } = await admin.query(
        `select pg_terminate_backend(pid) as terminated from pg_stat_activity where datname = current_database() and application_name = $1`,
        [`hongbao engine ${(await import('node:os')).hostname()} pid ${holder.child.pid}`],
      );
      expect(rows.map((row) => row.terminated)).toEqual([true]);
    } finally {
      await admin.end();
    }
    const exited = await until(async () => holder.child.exitCode, (code) => code !== null, 10_000);
    expect(exited).toBe(1);
    expect(holder.output()).toMatch(/^hongbao: lost the connection that holds the engine lock \(.+\); stopping so that no open is answered without it$/m);
  }, 240_000);
});
