// kill -9 in the middle of a provider payment, on the embedded default (PGlite in a DATA_DIR, the
// table log in it): between the return and the notification, and between the notification and
// the crediting. The sandbox provider runs in this process, so its retries outlive the engine.
// Each test proves its fault happened by opening the killed engine's PGlite folder (its stale
// lock is taken over: its process is gone) before starting the engine again on it; afterwards
// every held claim is credited exactly once and the books reconcile (test/support/payment-crash.ts).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { LOCK_FILE_NAME } from '../../src/ledger/data-dir-lock.js';
import { openDatabase, rowsOf } from '../../src/ledger/database.js';
import type { PacketEvent } from '../../src/log/events.js';
import { CRASH_SECRET } from '../support/crash-scenario.js';
import {
  crashBetweenNotificationAndCrediting,
  crashBetweenReturnAndNotification,
  ENGINE_ENV,
  eventually,
  startOnPort,
  startOutsideSandbox,
  type DurableState,
  type OutsideSandbox,
  type PaymentCrashWorld,
} from '../support/payment-crash.js';
import { pgliteTemplate } from '../support/pglite-template.js';
import { freePort, type ServerProcess } from '../support/process.js';

const cleanups: (() => Promise<void>)[] = [];
/** Every engine process of the test, killed ones included: what they said is shown if it fails. */
const started: ServerProcess[] = [];

afterEach(async (context) => {
  // A failed crash test shows what the engine said.
  if (context.task.result?.state === 'fail') for (const server of started) console.error(server.output().slice(-5000));
  started.length = 0;
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

/** One engine process on one DATA_DIR and one port, with the sandbox at SANDBOX_URL. */
async function embeddedWorld(name: string, options: { delayedNotifyMs?: number } = {}): Promise<PaymentCrashWorld> {
  const sandbox: OutsideSandbox = await startOutsideSandbox(options);
  cleanups.push(() => sandbox.close());
  const dataDir = mkdtempSync(join(tmpdir(), `hongbao-payment-crash-${name}-`));
  cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
  // A migrated database in the folder first (this run's template), so the first start need not create and migrate one: seconds saved.
  await (await openDatabase({ dataDir, loadDataDir: pgliteTemplate() })).close();
  const port = await freePort();
  const env = { DATA_DIR: dataDir, AUTH_SECRET: CRASH_SECRET, SEED_SECRET: 'payment-crash-seed', ...ENGINE_ENV, ...sandbox.env };
  const start = async () => {
    const server = await startOnPort(env, port);
    started.push(server);
    return server;
  };
  let engine: ServerProcess | undefined = await start();
  cleanups.push(async () => void (await engine?.kill('SIGKILL')));
  const url = engine.url;

  const read = async <T>(reader: (state: DurableState) => Promise<T>): Promise<T> => {
    expect(engine, 'the engine must be down before its folder is opened').toBeUndefined();
    // The killed process left its lock file behind; its pid is gone, so the lock is taken over.
    const database = await openDatabase({ dataDir });
    try {
      return await reader({
        db: database.db,
        async packetEvents(packetId) {
          const rows = await rowsOf<{ event: PacketEvent | string }>(database.db, sql`select event from log_events where packet_id = ${packetId} order by seq`);
          return rows.map((row) => (typeof row.event === 'string' ? (JSON.parse(row.event) as PacketEvent) : row.event));
        },
      });
    } finally {
      await database.close();
    }
  };
  return {
    name,
    sandbox,
    engineUrl: () => url,
    async crash() {
      const victim = engine!;
      engine = undefined;
      await victim.kill('SIGKILL');
      expect(victim.child.signalCode).toBe('SIGKILL');
      // kill -9 left the folder's lock behind; the next opener takes it over (its pid is gone).
      expect(JSON.parse(readFileSync(join(dataDir, LOCK_FILE_NAME), 'utf8'))).toMatchObject({ pid: victim.child.pid });
    },
    async restart() {
      engine = await start();
    },
    inspect: read,
    async audit(reader) {
      const stopping = engine!;
      engine = undefined;
      await stopping.kill('SIGTERM');
      return read(reader);
    },
    async waitBooked() {
      // One process books its own table log: lag 0 is every claim booked.
      await eventually(
        'the ledger caught up',
        async () => /^hongbao_ledger_lag_events (\d+)$/m.exec(await (await fetch(`${url}/metrics`)).text())?.[1],
        (lag) => lag === '0',
      );
    },
  };
}

describe('kill -9 during a provider payment, on the embedded default', () => {
  it('between the return and the notification: the provider retries into the restarted engine, and every held claim is credited once', async () => {
    const world = await embeddedWorld('return');
    const report = await crashBetweenReturnAndNotification(world);
    expect(report.heldClaims).toBe(12);
    // The provider met the dead (or still starting) engine before it delivered.
    expect(report.failedAttempts).toBeGreaterThanOrEqual(1);
  });

  it('between the notification and the crediting: the funding is in the log, the claims are not credited; after the restart they are, once', async () => {
    const world = await embeddedWorld('notify');
    const report = await crashBetweenNotificationAndCrediting(world, { openers: 80, attemptsMax: 5 });
    console.log(`embedded, notification → crediting: ${report.attempts} attempt(s): ${report.found.join('; ')}`);
    expect(report.found[report.found.length - 1]).toBe('funded in the log, no claim credited');
  });
});
