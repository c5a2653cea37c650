// Wiring only: config → the composed product → HTTP server; clean stop on signals.
import { serve } from '@hono/node-server';
import { pino } from 'pino';
import { composeHongbao, composeOptionsFrom } from './app/compose.js';
import { ConfigError, loadConfig } from './config.js';
import { createApp } from './http/app.js';

const systemClock = { now: () => Date.now() };

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = pino({ level: config.logLevel });
  for (const warning of config.warnings) logger.warn(warning);

  const hongbao = await composeHongbao(composeOptionsFrom(config, logger, systemClock));
  const app = createApp(hongbao.service, {
    authSecret: config.authSecret,
    logger,
    bodyBytesMax: config.bodyBytesMax,
    tokenTtlMaxSeconds: config.tokenTtlMaxSeconds,
  });
  const server = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, (info) => {
    const url = `http://${config.host}:${info.port}`;
    console.log(
      `hongbao listening on ${url} · log: ${hongbao.log.name} · database: ${hongbao.database.where} · cache: ${hongbao.cacheName} · role: ${config.role}`,
    );
    console.log(`get a token: npm run token -- <userId> [--admin]   then: curl -H "Authorization: Bearer <token>" ${url}/v1/wallet`);
  });
  // Listening already: /readyz says 503 until the ledger has applied what the log holds.
  await hongbao.recover();
  logger.info('recovered; ready');

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    server.close();
    await hongbao.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((error: unknown) => {
  console.error(error instanceof ConfigError ? `hongbao: ${error.message}` : error);
  process.exit(1);
});
