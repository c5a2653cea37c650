// What the two Postgres baselines share: the pool, a fresh schema per run with the two tables
// every such design has, loading the packets, reading the claims back, and dropping it all.
import pg from 'pg';
import { nextShare } from '../../src/domain/allocation.js';
import { packetSeed, type Seed } from '../../src/domain/random.js';
import { type Claim, LIMITS, type Workload, packetIds } from './workload.js';

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/**
 * One connection per open in flight, up to 32: Postgres here has 2 cores, and more backends
 * than that only queue on the same row locks and CPUs while costing memory.
 */
export function createPool(workload: Workload, applicationName: string): pg.Pool {
  const pool = new pg.Pool({
    connectionString: DATABASE_URL,
    max: Math.max(1, Math.min(workload.concurrency, 32)),
    // Connections stay open for the whole run: a reconnect mid-run would be timed.
    idleTimeoutMillis: 0,
    connectionTimeoutMillis: 5_000,
    // A stuck statement fails the run instead of hanging it.
    statement_timeout: 30_000,
    application_name: applicationName,
    allowExitOnIdle: false,
  });
  const report = (error: Error) => process.stderr.write(`${applicationName}: connection error: ${error.message}\n`);
  pool.on('error', report);
  // pg-pool listens for errors only on idle clients; one arriving between two queries of a
  // checked-out client (the server restarting, say) would otherwise crash the process before
  // cleanup. The open in progress still fails, and with it the run.
  pool.on('connect', (client) => client.on('error', report));
  return pool;
}

/** Opens every pool connection before the clock starts, so connecting is not timed. */
export async function warm(pool: pg.Pool, size: number): Promise<void> {
  const clients = await Promise.all(Array.from({ length: size }, () => pool.connect()));
  for (const client of clients) client.release();
}

/** A fresh schema per run: nothing left from another run, and one DROP removes everything. */
export function schemaName(design: string): string {
  return `hb_bench_${design.replace(/-/g, '_')}_${process.pid}_${Date.now().toString(36)}`;
}

/** Whether a process of this machine still runs: leftovers of dead runs may be swept. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === 'EPERM';
  }
}

/** Drops the schemas of earlier runs on this machine whose process is gone (killed, or Postgres restarted under it). */
async function dropOrphans(pool: pg.Pool): Promise<void> {
  const { rows } = await pool.query<{ nspname: string }>(`SELECT nspname FROM pg_namespace WHERE nspname LIKE 'hb\\_bench\\_%'`);
  for (const { nspname } of rows) {
    const pid = Number(/_(\d+)_[0-9a-z]+$/.exec(nspname)?.[1]);
    if (Number.isSafeInteger(pid) && pid !== process.pid && !alive(pid)) await pool.query(`DROP SCHEMA IF EXISTS ${nspname} CASCADE`);
  }
}

export async function createTables(pool: pg.Pool, schema: string, workload: Workload): Promise<void> {
  await dropOrphans(pool);
  // integer, not bigint: a packet holds at most 100 × 20,000 fen, and pg returns int8 as strings.
  // No foreign key from claims to packets: it would take a KEY SHARE lock on the hottest row for
  // every insert, and the packet row is already locked or version-checked by the same transaction.
  await pool.query(`
    CREATE SCHEMA ${schema};
    CREATE TABLE ${schema}.packets (
      id text PRIMARY KEY,
      total_fen integer NOT NULL,
      share_count integer NOT NULL,
      remaining_count integer NOT NULL CHECK (remaining_count >= 0),
      remaining_fen integer NOT NULL CHECK (remaining_fen >= remaining_count),
      seq integer NOT NULL DEFAULT 0,
      version integer NOT NULL DEFAULT 0
    );
    CREATE TABLE ${schema}.claims (
      packet_id text NOT NULL,
      user_id text NOT NULL,
      amount_fen integer NOT NULL,
      seq integer NOT NULL,
      PRIMARY KEY (packet_id, user_id)
    );`);
  await pool.query(
    `INSERT INTO ${schema}.packets (id, total_fen, share_count, remaining_count, remaining_fen)
     SELECT id, $2, $3, $3, $2 FROM unnest($1::text[]) AS id`,
    [packetIds(workload), workload.totalFen, workload.sharesPerPacket],
  );
  await pool.query(`ANALYZE ${schema}.packets`);
}

export async function loadClaims(pool: pg.Pool, schema: string): Promise<Claim[]> {
  const { rows } = await pool.query<{ packet_id: string; user_id: string; amount_fen: number }>(
    `SELECT packet_id, user_id, amount_fen FROM ${schema}.claims`,
  );
  return rows.map((row) => ({ packetId: row.packet_id, userId: row.user_id, amountFen: row.amount_fen }));
}

/** The durability the numbers were measured with. */
export async function serverSettings(pool: pg.Pool): Promise<Record<string, string>> {
  const { rows } = await pool.query<{ name: string; setting: string }>(
    `SELECT name, setting FROM pg_settings WHERE name IN ('server_version', 'synchronous_commit', 'fsync', 'wal_sync_method', 'max_connections')`,
  );
  return Object.fromEntries(rows.map((row) => [row.name, row.setting]));
}

export async function dropTables(pool: pg.Pool, schema: string): Promise<void> {
  try {
    await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await pool.end();
  }
}

/** The packet row as both Postgres designs read it before deciding an open. */
export interface ShareState {
  readonly total_fen: number;
  readonly share_count: number;
  readonly remaining_fen: number;
  readonly remaining_count: number;
  readonly seq: number;
}

/**
 * The next share by the engine's own rule and seed, so every design hands out the same
 * amounts and one verifier judges them all. Returns the seq it is for, and the amount.
 */
export function shareDecider(workload: Workload): (packetId: string, packet: ShareState) => { seq: number; amountFen: number } {
  const seeds = new Map<string, Seed>(packetIds(workload).map((id) => [id, packetSeed(workload.seedSecret, id)]));
  return (packetId, packet) => {
    const seq = packet.seq + 1;
    const amountFen = nextShare(
      {
        type: 'group_lucky',
        totalFen: packet.total_fen,
        count: packet.share_count,
        remainingFen: packet.remaining_fen,
        remainingCount: packet.remaining_count,
        seq,
        seed: seeds.get(packetId)!,
      },
      LIMITS,
    );
    return { seq, amountFen };
  };
}
