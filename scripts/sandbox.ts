// The sandbox payment provider alone: npm run sandbox. Environment: SANDBOX_PORT (3100), HOST
// (127.0.0.1), DATA_DIR (./data; its key and state go to <DATA_DIR>/sandbox/), SANDBOX_MERCHANT_KEY
// (the dev key shared with the engine's default), SANDBOX_PRIVATE_KEY (base64 PKCS8, optional).
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import { pino } from 'pino';
import { createSandbox, SANDBOX_DEV_MERCHANT_KEY } from '../src/payments/sandbox/index.js';

function portFrom(text: string | undefined, fallback: number): number {
  if (text === undefined || text === '') return fallback;
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    console.error(`sandbox: SANDBOX_PORT must be a port number (0–65535); got ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return port;
}

const port = portFrom(process.env.SANDBOX_PORT, 3100);
const host = process.env.HOST || '127.0.0.1';
const logger = pino({ name: 'sandbox', level: process.env.LOG_LEVEL || 'info' });

let sandbox: ReturnType<typeof createSandbox>;
try {
  sandbox = createSandbox({
    dataDir: process.env.DATA_DIR || './data',
    merchantKey: process.env.SANDBOX_MERCHANT_KEY || SANDBOX_DEV_MERCHANT_KEY,
    ...(process.env.SANDBOX_PRIVATE_KEY ? { privateKey: process.env.SANDBOX_PRIVATE_KEY } : {}),
    logger,
  });
} catch (error) {
  console.error(`sandbox: cannot start: ${(error as Error).message}`);
  process.exit(1);
}

const server = createAdaptorServer({ fetch: sandbox.app.fetch, port, hostname: host });
server.once('error', (error: NodeJS.ErrnoException) => {
  console.error(`sandbox: cannot listen on ${host}:${port} (${error.code ?? error.message}); set SANDBOX_PORT to a free port`);
  void sandbox.close().finally(() => process.exit(1));
});
server.listen(port, host, () => {
  const url = `http://${host}:${(server.address() as AddressInfo).port}`;
  console.log(`sandbox payment provider listening on ${url} · public key (ed25519, base64 SPKI): ${sandbox.publicKeyBase64}`);
});

let stopping = false;
const stop = async (signal: string) => {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'stopping');
  server.close();
  // Pending notifications stay in state.json and resume on the next start.
  await sandbox.close();
  process.exit(0);
};
process.on('SIGINT', () => void stop('SIGINT'));
process.on('SIGTERM', () => void stop('SIGTERM'));
