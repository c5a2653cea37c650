// Wiring only: config → the HTTP port → the composed product → serving; clean stop on signals.
// A start-up failure an operator can fix prints one line with the fix (src/app/startup-errors.ts).
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import { pino, type Logger } from 'pino';
import { composeHongbao, composeOptionsFrom, SANDBOX_MOUNT_PATH } from './app/compose.js';
import { createSandbox, SANDBOX_DEV_MERCHANT_KEY } from './payments/sandbox/index.js';
import { listenStartupError, startupLine } from './app/startup-errors.js';
import { loadConfig } from './config.js';
import { createApp } from './http/app.js';

const systemClock = { now: () => Date.now() };
let logger: Logger = pino({ level: 'info' });

/** Until the product is composed every request hears 503, as /readyz does while recovering. */
const notYet = () =>
  new Response(JSON.stringify({ error: { code: 'unavailable', message: 'starting: opening the database and the log; retry shortly' } }), {
    status: 503,
    headers: { 'content-type': 'application/json' },
  });

async function main(): Promise<void> {
  const config = loadConfig();
  logger = pino({ level: config.logLevel });
  for (const warning of config.warnings) logger.warn(warning);

  // The port first: a port in use is found before any database or recovery work starts.
  let fetch: (request: Request) => Response | Promise<Response> = notYet;
  const server = createAdaptorServer({ fetch: (request) => fetch(request), port: config.port, hostname: config.host });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => reject(listenStartupError(error, config.host, config.port)));
    server.listen(config.port, config.host, () => resolve());
  });
  server.on('error', (error) => logger.error({ err: error }, 'http server error'));

  const hongbao = await composeHongbao({
    ...composeOptionsFrom(config, logger, systemClock),
    // Fail-stop: without the lock another engine may serve this log; a supervisor restarts us.
    onEngineLockLost: (error) => {
      logger.debug({ err: error }, 'engine lock connection lost');
      console.error(`hongbao: lost the connection that holds the engine lock (${error.message}); stopping so that no open is answered without it`);
      process.exit(1);
    },
    onStorageLost: (error) => {
      console.error(`hongbao: the storage thread stopped (${error.message}); stopping so that no open is answered that cannot be booked`);
      process.exit(1);
    },
  });
  const app = createApp(hongbao.service, {
    authSecret: config.authSecret,
    logger,
    bodyBytesMax: config.bodyBytesMax,
    tokenTtlMaxSeconds: config.tokenTtlMaxSeconds,
  });
  // Without SANDBOX_URL this process serves the sandbox provider itself, so `npm start` is all a
  // newcomer needs; the engine still talks to it only over HTTP, as to a real provider.
  // A ledger-only process serves no API, and so no sandbox either.
  const sandbox =
    config.sandbox.url === undefined && config.role !== 'ledger'
      ? createSandbox({ dataDir: config.dataDir, merchantKey: config.sandbox.merchantKey ?? SANDBOX_DEV_MERCHANT_KEY, ...(config.sandbox.privateKey ? { privateKey: config.sandbox.privateKey } : {}), logger })
      : undefined;
  if (sandbox !== undefined) app.route(SANDBOX_MOUNT_PATH, sandbox.app);
  fetch = app.fetch;
  const url = `http://${config.host}:${(server.address() as AddressInfo).port}`;
  console.log(
    `hongbao listening on ${url} · log: ${hongbao.log.name} · database: ${hongbao.database.where} · cache: ${hongbao.cacheName} · role: ${config.role}`,
  );
  console.log(`get a token: npm run token -- <userId> [--admin]   then: curl -H "Authorization: Bearer <token>" ${url}/v1/wallet`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    server.close();
    await sandbox?.close();
    await hongbao.stop();
    process.exit(0);
  };
  // Before recovery: a standby waiting for the engine lock must stop cleanly too.
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));

  // Listening already: /readyz says 503 until the ledger has applied what the log holds (and,
  // on a Postgres server, this process holds the engine lock).
  await hongbao.recover();
  if (!stopping) logger.info('recovered; ready');
}

main().catch((error: unknown) => {
  const line = startupLine(error);
  if (line === undefined) {
    console.error(error);
  } else {
    // The cause (driver error, stack) for whoever runs with LOG_LEVEL=debug.
    logger.debug({ err: (error as Error).cause ?? error }, 'start-up failed');
    console.error(line);
  }
  process.exit(1);
});
