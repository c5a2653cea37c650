// One database handle for both modes: PGlite (embedded Postgres in WASM) by default, a
// Postgres server when DATABASE_URL is set. Same SQL, same migrations under drizzle/.
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { drizzle as drizzleNodePostgres } from 'drizzle-orm/node-postgres';
import { migrate as migrateNodePostgres } from 'drizzle-orm/node-postgres/migrator';
import type { PgDatabase, PgQueryResultHKT, PgTransaction } from 'drizzle-orm/pg-core';
import type { ExtractTablesWithRelations, SQL } from 'drizzle-orm';
import pg from 'pg';
import { MIGRATIONS_LOCK_NAME, withAdvisoryLock } from './advisory-lock.js';
import { acquireDataDirLock } from './data-dir-lock.js';
import * as schema from './schema.js';

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;
export type Tx = PgTransaction<PgQueryResultHKT, typeof schema, ExtractTablesWithRelations<typeof schema>>;
/** Either the database or a transaction: what a statement runs on. */
export type Executor = Db | Tx;

export interface Database {
  readonly db: Db;
  readonly kind: 'pglite' | 'postgres';
  /** For the start line: where the data lives, without credentials. */
  readonly where: string;
  close(): Promise<void>;
}

const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../drizzle', import.meta.url));

export interface DatabaseOptions {
  /** A Postgres server; unset means embedded PGlite. */
  readonly url?: string | undefined;
  /** PGlite's folder, or 'memory' to keep nothing. */
  readonly dataDir: string;
  readonly onPoolError?: (error: Error) => void;
  /**
   * PGlite only: start from this dump of a database (see migratedTemplate) instead of an empty
   * one. Loading a migrated template costs a tenth of creating and migrating a database.
   */
  readonly loadDataDir?: Blob;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.url !== undefined) {
    const pool = new pg.Pool({
      connectionString: options.url,
      max: 10,
      connectionTimeoutMillis: 5_000,
      idleTimeoutMillis: 30_000,
      statement_timeout: 30_000,
      application_name: 'hongbao',
    });
    // An idle client's connection dying (a Postgres restart) is reported here; without a
    // listener Node would crash the process. The next query simply gets a new connection.
    pool.on('error', (error) => options.onPoolError?.(error));
    // A checked-out client has no pool listener: a server restart mid-transaction would emit an
    // unhandled 'error' and kill the process. The failing query rejects on its own; note it only.
    pool.on('connect', (client) => client.on('error', (error) => options.onPoolError?.(error)));
    const db = drizzleNodePostgres(pool, { schema }) as unknown as Db;
    try {
      await migrateServer(pool);
    } catch (error) {
      await pool.end().catch(() => {});
      throw error;
    }
    const url = new URL(options.url);
    return { db, kind: 'postgres', where: `postgres://${url.host}${url.pathname}`, close: () => pool.end() };
  }
  const inMemory = options.dataDir === 'memory';
  const folder = `${options.dataDir}/pglite`;
  // Before PGlite touches the folder: a second process on it would corrupt it.
  const lock = inMemory ? undefined : acquireDataDirLock(options.dataDir);
  try {
    if (!inMemory) mkdirSync(folder, { recursive: true });
    const client = inMemory
      ? new PGlite(options.loadDataDir === undefined ? {} : { loadDataDir: options.loadDataDir })
      : new PGlite(folder, options.loadDataDir === undefined ? {} : { loadDataDir: options.loadDataDir });
    const db = drizzlePglite(client, { schema }) as unknown as Db;
    await migratePglite(db as never, { migrationsFolder: MIGRATIONS_FOLDER });
    return {
      db,
      kind: 'pglite',
      where: inMemory ? 'pglite (memory)' : `pglite (${folder})`,
      close: async () => {
        await client.close();
        lock?.release();
      },
    };
  } catch (error) {
    lock?.release();
    throw error;
  }
}

/**
 * Migrations on a server run under an advisory lock on one dedicated connection: processes
 * starting at once on a new database would otherwise race on CREATE TABLE (a duplicate-type
 * error). The second waits, then finds every migration applied.
 */
async function migrateServer(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await withAdvisoryLock(client, MIGRATIONS_LOCK_NAME, () =>
      migrateNodePostgres(drizzleNodePostgres(client, { schema }) as never, { migrationsFolder: MIGRATIONS_FOLDER }),
    );
  } finally {
    client.release();
  }
}

/** An in-memory PGlite database with every migration applied, dumped: what loadDataDir takes. */
export async function migratedTemplate(): Promise<Blob> {
  const client = new PGlite();
  try {
    await migratePglite(drizzlePglite(client, { schema }) as never, { migrationsFolder: MIGRATIONS_FOLDER });
    return await client.dumpDataDir('none');
  } finally {
    await client.close();
  }
}

/** Rows of a raw statement, the same shape from both drivers. */
export async function rowsOf<Row>(executor: { execute(query: SQL): Promise<unknown> }, query: SQL): Promise<Row[]> {
  const result = (await executor.execute(query)) as unknown as { rows: Row[] };
  return result.rows;
}

/** Connection-level failures (server down, restarting, network): the caller should retry later. */
const CONNECTION_ERROR_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', '57P01', '57P02', '57P03', '53300']);

export function isConnectionError(error: unknown): boolean {
  for (let current = error; typeof current === 'object' && current !== null; current = (current as { cause?: unknown }).cause) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && (CONNECTION_ERROR_CODES.has(code) || code.startsWith('08'))) return true;
    const message = (current as { message?: unknown }).message;
    if (typeof message === 'string' && /Connection terminated|connection timeout|Client has encountered a connection error/i.test(message)) return true;
    if ((current as { cause?: unknown }).cause === current) break;
  }
  return false;
}
