// Runs the EventLog conformance suite against the in-memory log and the table log on PGlite
// (and on the Postgres server when DATABASE_URL is set).
import { describeEventLog } from '../support/event-log-suite.js';
import { MemoryLog } from '../../src/log/memory-log.js';
import { TableLog } from '../../src/log/table-log.js';
import { openDatabase } from '../../src/ledger/database.js';
import { openTestDatabase } from '../support/pglite-template.js';
import { freshServerDatabase } from '../support/server-database.js';

describeEventLog('memory', async () => {
  const log = new MemoryLog();
  return { log, reopen: async () => log, cleanup: async () => {} };
});

describeEventLog('table on PGlite', async () => {
  const database = await openTestDatabase();
  const log = new TableLog(database.db);
  return { log, reopen: async () => new TableLog(database.db), cleanup: () => database.close() };
});

if (process.env.DATABASE_URL) {
  describeEventLog('table on Postgres server', async () => {
    const server = await freshServerDatabase(process.env.DATABASE_URL!);
    const database = await openDatabase({ url: server.url, dataDir: 'memory' });
    const log = new TableLog(database.db);
    return {
      log,
      reopen: async () => new TableLog(database.db),
      cleanup: async () => {
        await database.close();
        await server.drop();
      },
    };
  });
}
