// Runs the ledger suite against PGlite, and against the Postgres server when DATABASE_URL is set.
import { openDatabase } from '../../src/ledger/database.js';
import { describeLedger } from '../support/ledger-suite.js';
import { freshServerDatabase } from '../support/server-database.js';

describeLedger('PGlite', async () => {
  const database = await openDatabase({ dataDir: 'memory' });
  return { database, cleanup: () => database.close() };
});

if (process.env.DATABASE_URL) {
  describeLedger('Postgres server', async () => {
    const server = await freshServerDatabase(process.env.DATABASE_URL!);
    const database = await openDatabase({ url: server.url, dataDir: 'memory' });
    return {
      database,
      cleanup: async () => {
        await database.close();
        await server.drop();
      },
    };
  });
}
