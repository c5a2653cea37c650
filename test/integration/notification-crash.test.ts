// kill -9 in the middle of webhook delivery, on the embedded default (PGlite in a DATA_DIR, the
// table log in it): one endpoint answering 500 (retries on the durable schedule), one holding
// every request (deliveries leased, in flight); the engine (src/main.ts) is killed, the killed
// process's PGlite folder is opened to prove the fault, and the engine is started again on it.
// Every event of the scenario then reaches both endpoints, in order per packet, signed
// (test/support/notification-crash.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/ledger/database.js';
import { crashMidDelivery, NOTIFY_CRASH_ENV, type NotificationCrashWorld } from '../support/notification-crash.js';
import { pgliteTemplate } from '../support/pglite-template.js';
import { startServer, type ServerProcess } from '../support/process.js';

const cleanups: (() => Promise<void>)[] = [];
const started: ServerProcess[] = [];

afterEach(async (context) => {
  if (context.task.result?.state === 'fail') for (const server of started) console.error(server.output().slice(-5000));
  started.length = 0;
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

describe('kill -9 mid-delivery, on the embedded default', () => {
  it('loses no event: after the restart every event reaches both endpoints, in order per packet, signed', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'hongbao-notification-crash-'));
    cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
    // A migrated database in the folder first, so the first start need not migrate: seconds saved.
    await (await openDatabase({ dataDir, loadDataDir: pgliteTemplate() })).close();
    const env = { ...NOTIFY_CRASH_ENV, DATA_DIR: dataDir };
    let engine: ServerProcess | undefined;
    const start = async () => {
      engine = await startServer(env);
      started.push(engine);
    };
    cleanups.push(async () => void (await engine?.kill('SIGKILL')));
    await start();
    let url = engine!.url;
    const world: NotificationCrashWorld = {
      engineUrl: () => url,
      async crash() {
        const victim = engine!;
        engine = undefined;
        await victim.kill('SIGKILL');
        expect(victim.child.signalCode).toBe('SIGKILL');
      },
      async restart() {
        await start();
        url = engine!.url;
      },
      async inspect(read) {
        expect(engine, 'the engine must be down before its folder is opened').toBeUndefined();
        // The killed process left its lock file; its pid is gone, so the lock is taken over.
        const database = await openDatabase({ dataDir });
        try {
          return await read(database.db);
        } finally {
          await database.close();
        }
      },
    };
    const report = await crashMidDelivery(world);
    console.log(`embedded notification crash: ${JSON.stringify(report)}`);
    expect(report.expectedEvents).toBe(3 * 10 + 5);
  }, 90_000);
});
