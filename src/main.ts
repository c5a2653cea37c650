// Wiring only: config → service (embedded or real services) → HTTP server; clean stop on signals.
import { serve } from '@hono/node-server';
import { pino } from 'pino';
import { createRedis } from './cache/redis-client.js';
import { RedisPacketCache } from './cache/redis-packet-cache.js';
import { RedisRateLimiter } from './cache/redis-rate-limit.js';
import { ConfigError, loadConfig } from './config.js';
import { Hongbao } from './hongbao.js';
import { createApp, OPEN_BURST, OPENS_PER_SECOND } from './http/app.js';
import { TokenBucketLimiter } from './http/rate-limit.js';

const systemClock = { now: () => Date.now() };

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = pino({ level: config.logLevel });
  for (const warning of config.warnings) logger.warn(warning);

  const redis = config.redisUrl === undefined ? undefined : createRedis(config.redisUrl, (error) => logger.debug({ err: error }, 'redis'));
  // Redis is a cache: start without it if it is down; the client keeps reconnecting.
  await redis?.connect().catch((error: unknown) => logger.warn({ err: error }, 'redis unreachable at start; serving without it'));
  const kafkaBrokers = config.kafkaBrokers;

  const hongbao = await Hongbao.open({
    dataDir: config.dataDir,
    databaseUrl: config.databaseUrl,
    seedSecret: config.seedSecret,
    packetTtlMs: config.packetTtlMs,
    clock: systemClock,
    logger,
    runConsumer: config.role !== 'engine',
    runJobs: config.role !== 'ledger',
    ...(redis ? { cache: new RedisPacketCache(redis) } : {}),
    ...(kafkaBrokers
      ? {
          // Loaded only in services mode: the embedded default never touches kafkajs.
          openLog: async () =>
            (await import('./log/kafka-log.js')).KafkaLog.open({
              brokers: kafkaBrokers,
              topic: config.kafkaTopic,
              partitions: config.kafkaPartitions,
              clientId: 'hongbao',
              // One group per topic: a group shared by consumers of different topics gets
              // partitions assigned to members that never read them.
              groupId: `${config.kafkaTopic}.ledger`,
              logger,
            }),
        }
      : {}),
  });
  const localLimiter = new TokenBucketLimiter(OPEN_BURST, OPENS_PER_SECOND);
  const app = createApp(hongbao, {
    authSecret: config.authSecret,
    logger,
    limiter: redis ? new RedisRateLimiter(redis, OPEN_BURST, OPENS_PER_SECOND, localLimiter) : localLimiter,
  });
  const cacheName = redis ? `redis (${new URL(config.redisUrl!).host})` : 'in-process';
  const server = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, (info) => {
    const url = `http://${config.host}:${info.port}`;
    console.log(`hongbao listening on ${url} · log: ${hongbao.log.name} · database: ${hongbao.database.where} · cache: ${cacheName} · role: ${config.role}`);
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
    redis?.disconnect();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((error: unknown) => {
  console.error(error instanceof ConfigError ? `hongbao: ${error.message}` : error);
  process.exit(1);
});
