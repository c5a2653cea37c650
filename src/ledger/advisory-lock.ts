// Postgres advisory locks, the coordinator this project uses between processes on one
// database server: a blocking one around migrations (concurrent starts on a new database
// would race on CREATE TABLE), and the engine lock, a session-level lock held for the life
// of a process that serves packets, so that one engine process serves the table log at a time
// (on Kafka the broker's fence of each slot takes its place).
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import pg from 'pg';

/** First half of every key: "hbao". Keeps our locks apart from other users of the database. */
const KEY_SPACE = 0x6862616f;

/** The second half of the key: 32 bits of sha256(name), as a signed int4. */
export function advisoryKey(name: string): number {
  return createHash('sha256').update(name).digest().readInt32BE(0);
}

export const MIGRATIONS_LOCK_NAME = 'migrations';

/** Runs `work` while holding the blocking advisory lock `name` on `client`'s session. */
export async function withAdvisoryLock<T>(client: pg.ClientBase, name: string, work: () => Promise<T>): Promise<T> {
  await client.query('select pg_advisory_lock($1::int4, $2::int4)', [KEY_SPACE, advisoryKey(name)]);
  try {
    return await work();
  } finally {
    await client.query('select pg_advisory_unlock($1::int4, $2::int4)', [KEY_SPACE, advisoryKey(name)]);
  }
}

/**
 * The engine lock of the table log on a Postgres server (advisory locks are scoped to the
 * database). On Kafka there is none: each slot's owner is fenced by the broker instead.
 */
export const ENGINE_LOCK_NAME = 'engine:table';

/** How often a holder proves its lock connection is alive; a failed or late ping is a lost lock. */
export const ENGINE_LOCK_PING_MS = 1_000;
const ENGINE_LOCK_PING_TIMEOUT_MS = 2_000;
const CONNECT_TIMEOUT_MS = 5_000;
/**
 * Server-side keep-alive of the lock session, so that Postgres releases the lock of a holder
 * whose host vanished in ~25 s instead of the kernel's 2 hours. The holder itself notices a
 * lost connection within ENGINE_LOCK_PING_MS + ENGINE_LOCK_PING_TIMEOUT_MS and stops first.
 */
const SERVER_KEEPALIVE = { idle: 10, interval: 5, count: 3 };

export type EngineLockAttempt = { taken: true } | { taken: false; holder: string };

/**
 * A session-level advisory lock on a dedicated connection (never a pooled one: a pooled
 * session could be reused or reset). Once taken, it is held until release() or the loss of the
 * connection, which is reported once to onLost: the holder must then stop serving at once.
 */
export class EngineLock {
  private client: pg.Client | undefined;
  private held = false;
  private released = false;
  private ping: NodeJS.Timeout | undefined;
  private readonly key: number;

  constructor(
    private readonly url: string,
    readonly name: string,
    private readonly onLost: (error: Error) => void,
  ) {
    this.key = advisoryKey(name);
  }

  /** This process's name in pg_stat_activity, which is how a waiting process names the holder. */
  static applicationName(): string {
    return `hongbao engine ${hostname()} pid ${process.pid}`.slice(0, 63);
  }

  /** One attempt: takes the lock, or names the process that holds it. */
  async tryTake(): Promise<EngineLockAttempt> {
    if (this.held) return { taken: true };
    const client = await this.connect();
    const { rows } = await client.query<{ taken: boolean }>('select pg_try_advisory_lock($1::int4, $2::int4) as taken', [KEY_SPACE, this.key]);
    if (rows[0]?.taken === true) {
      this.held = true;
      this.ping = setInterval(() => void this.checkAlive(), ENGINE_LOCK_PING_MS);
      return { taken: true };
    }
    return { taken: false, holder: await this.holder(client) };
  }

  async release(): Promise<void> {
    this.released = true;
    clearInterval(this.ping);
    const client = this.client;
    this.client = undefined;
    this.held = false;
    // Ending the session releases every advisory lock it holds.
    await client?.end().catch(() => {});
  }

  private async connect(): Promise<pg.Client> {
    if (this.client !== undefined) return this.client;
    const client = new pg.Client({
      connectionString: this.url,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      query_timeout: ENGINE_LOCK_PING_TIMEOUT_MS,
      keepAlive: true,
      application_name: EngineLock.applicationName(),
    });
    client.on('error', (error) => this.lost(error));
    client.on('end', () => this.lost(new Error('the lock connection ended')));
    try {
      await client.connect();
      await client.query(
        `set tcp_keepalives_idle = ${SERVER_KEEPALIVE.idle}; set tcp_keepalives_interval = ${SERVER_KEEPALIVE.interval}; set tcp_keepalives_count = ${SERVER_KEEPALIVE.count}`,
      );
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
    this.client = client;
    return client;
  }

  private async checkAlive(): Promise<void> {
    const client = this.client;
    if (client === undefined || !this.held) return;
    try {
      await client.query('select 1');
    } catch (error) {
      this.lost(error as Error);
    }
  }

  private lost(error: Error): void {
    if (this.released) return;
    const wasHeld = this.held;
    this.held = false;
    clearInterval(this.ping);
    const client = this.client;
    this.client = undefined;
    void client?.end().catch(() => {});
    // A waiting process simply connects again on its next attempt; only a holder must stop.
    if (wasHeld) this.onLost(error);
  }

  private async holder(client: pg.Client): Promise<string> {
    const { rows } = await client.query<{ application_name: string; client_addr: string | null; backend_start: Date }>(
      `select a.application_name, a.client_addr::text as client_addr, a.backend_start
         from pg_locks l join pg_stat_activity a on a.pid = l.pid
        where l.locktype = 'advisory' and l.granted and l.classid = $1::int4::oid and l.objid = $2::int4::oid and l.objsubid = 2
          and l.database = (select oid from pg_database where datname = current_database())`,
      [KEY_SPACE, this.key],
    );
    const row = rows[0];
    if (row === undefined) return 'another process (it let go just now)';
    const from = row.client_addr === null ? '' : ` from ${row.client_addr}`;
    return `"${row.application_name}"${from} (since ${row.backend_start.toISOString()})`;
  }
}
