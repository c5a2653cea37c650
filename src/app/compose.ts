// The composition root: builds every part from the settings — database, event log (table or
// Kafka), engine, ledger consumer, Redis cache and rate limit, jobs — and the application
// service over them. main.ts, the test harness and the bench all build the product here.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { createRedis } from '../cache/redis-client.js';
import { RedisPacketCache } from '../cache/redis-packet-cache.js';
import { RedisRateLimiter } from '../cache/redis-rate-limit.js';
import type { Config } from '../config.js';
import type { Limits } from '../domain/limits.js';
import { checkPacketId, packetIdKeyFrom } from '../domain/packet-id.js';
import { packetSeed } from '../domain/random.js';
import type { Clock } from '../engine/clock.js';
import { Engine } from '../engine/engine.js';
import {
  DEFAULT_OPEN_RATE,
  DEFAULT_REQUEST_RATE,
  DEFAULT_REQUESTS_IN_FLIGHT_MAX,
  TokenBucketLimiter,
  type OpenRate,
  type RateLimiter,
} from '../engine/rate-limit.js';
import { every, expiryPass, EXPIRY_INTERVAL_MS, type PeriodicJob } from '../jobs/expiry.js';
import { ENGINE_LOCK_NAME, EngineLock } from '../ledger/advisory-lock.js';
import type { LedgerPort } from '../ledger/ledger.js';
import type { ConsumerPort } from '../ledger/ledger-consumer.js';
import { PendingCredits } from '../ledger/pending-credits.js';
import type { Committer } from '../log/group-commit.js';
import { claimTransferId } from '../log/events.js';
import { GroupCommitter } from '../log/group-commit.js';
import { UserAdmission } from './admission.js';
import { openKafkaLog, type KafkaSettings } from './open-kafka-log.js';
import { StorageThread, type AppendLog, type DatabaseHandle } from './storage-thread.js';
import { ClusterNode } from './cluster.js';
import { Service, singleNode } from './hongbao-service.js';
import { PAYMENT_JOBS_INTERVAL_MS, PaymentDesk, type Providers } from './payment-desk.js';
import { EventStreams } from './event-streams.js';
import { Dispatcher } from '../notify/dispatcher.js';
import { SANDBOX_DEV_MERCHANT_KEY } from '../payments/sandbox/index.js';
import { fetchSandboxPublicKey, SandboxProvider } from '../payments/sandbox-provider.js';
import { createServiceMetrics } from './metrics.js';
import { databaseStartupError, kafkaStartupError } from './startup-errors.js';

/** How long an activation waits for the ledger to catch up before answering 503. */
export const ACTIVATION_CATCH_UP_TIMEOUT_MS = 10_000;
/** How long start-up may take to apply what the log holds before it gives up. */
export const RECOVERY_TIMEOUT_MS = 10 * 60_000;
/** Idle actors are dropped after this; they come back from storage on the next request. */
export const ACTOR_IDLE_MS = 60_000;
/** How often an engine-only process (no consumer of its own) asks the ledger which of its pending credits are booked. */
export const PENDING_CHECK_INTERVAL_MS = 2_000;
/** Pending credits asked about per check. */
export const PENDING_CHECK_BATCH_MAX = 10_000;
/** How often delivered webhook deliveries and old events past their keeping are deleted. */
export const NOTIFICATIONS_PRUNE_INTERVAL_MS = 60_000;
/** How often a process that waits for the engine lock tries to take it again. */
export const ENGINE_LOCK_RETRY_MS = 2_000;

export interface ComposeOptions {
  readonly dataDir: string;
  /** Embedded PGlite only: start from this dump of a migrated database (tests). */
  readonly loadDataDir?: Blob;
  readonly databaseUrl?: string | undefined;
  readonly seedSecret: string;
  readonly limits: Limits;
  readonly openRate?: OpenRate;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Services mode: claims go through this Kafka topic. Unset: the table log in the database. */
  readonly kafka?: KafkaSettings | undefined;
  /** Services mode: the packet cache and the shared rate limit live here. */
  readonly redisUrl?: string | undefined;
  /** Whether this process runs the ledger consumer (false for ROLE=engine). */
  readonly runConsumer?: boolean;
  /** Whether this process runs the periodic jobs (tests drive them by hand). */
  readonly runJobs?: boolean;
  /** Replaces the per-user open limit (tests). */
  readonly openLimiter?: RateLimiter;
  /**
   * Whether this process serves packets (ROLE=all and ROLE=engine; default true). On a Postgres
   * server such a process serves only while it holds the log's engine lock.
   */
  readonly servesPackets?: boolean;
  /**
   * The engine lock's connection was lost while held: this process must not answer one more
   * open. main.ts exits (a supervisor restarts it); the default stops serving.
   */
  readonly onEngineLockLost?: (error: Error) => void;
  /**
   * The storage thread (database, ledger, consumer) died: nothing more can be booked or read.
   * main.ts exits (a supervisor restarts it); the default stops serving.
   */
  readonly onStorageLost?: (error: Error) => void;
  /** The per-user limit on every other authenticated request (default DEFAULT_REQUEST_RATE). */
  readonly requestRate?: OpenRate;
  /** Requests of one user in progress at once (default DEFAULT_REQUESTS_IN_FLIGHT_MAX). */
  readonly requestsInFlightMax?: number;
  /** This node's name and address in a cluster (default: a single node named after the process). */
  readonly node?: { readonly id: string; readonly url: string };
  /** Payment providers (absent: packets are paid from the balance only). */
  readonly payments?: PaymentOptions;
  /** Whether webhooks may point at private or loopback addresses (default true; production: WEBHOOK_ALLOW_PRIVATE). */
  readonly webhooksAllowPrivate?: boolean;
  /** Replaces the webhook dispatcher's retry gaps (tests). */
  readonly webhookRetryDelayMs?: (attempts: number) => number;
}

export interface PaymentOptions {
  /** The sandbox provider: where it answers, the merchant key, and its public key (unset: fetched once and pinned). */
  readonly sandbox: { readonly url: string; readonly merchantKey: string; readonly publicKey?: string | undefined };
  /** Where the provider reaches this engine (its notify route is under it). */
  readonly engineUrl: string;
  readonly timeoutMs: number;
  readonly resweepMs: number;
}

/** The payment settings from the config: the sandbox at SANDBOX_URL, or this process's own at /sandbox. */
export function paymentOptionsFrom(config: Config): PaymentOptions {
  return {
    sandbox: {
      url: config.sandbox.url ?? `${config.advertiseUrl}${SANDBOX_MOUNT_PATH}`,
      merchantKey: config.sandbox.merchantKey ?? SANDBOX_DEV_MERCHANT_KEY,
      publicKey: config.sandbox.publicKey,
    },
    engineUrl: config.advertiseUrl,
    timeoutMs: config.paymentTimeoutMs,
    resweepMs: config.paymentResweepMs,
  };
}

/** Where an engine without SANDBOX_URL mounts its own sandbox provider. */
export const SANDBOX_MOUNT_PATH = '/sandbox';

function paymentProviders(options: PaymentOptions | undefined): Providers {
  if (options === undefined) return new Map();
  const { sandbox } = options;
  return new Map([
    [
      'sandbox',
      async () =>
        new SandboxProvider({ baseUrl: sandbox.url, merchantKey: sandbox.merchantKey, publicKey: sandbox.publicKey ?? (await fetchSandboxPublicKey(sandbox.url)) }),
    ],
  ]);
}

/** The assembled product: its service, and its parts for operators and tests. */
export interface Hongbao {
  readonly service: Service;
  readonly database: DatabaseHandle;
  /** The log's writing side (Kafka, or the table log through the storage thread). */
  readonly log: AppendLog;
  readonly committer: Committer;
  readonly engine: Engine;
  /** The thread that owns the database and runs the ledger (storage-thread.ts). */
  readonly storage: StorageThread;
  /** Services mode: this node's place in the cluster (slots, their writers, the engine group). */
  readonly cluster: ClusterNode | undefined;
  readonly consumer: ConsumerPort;
  readonly ledger: LedgerPort;
  /** For the start line: which cache is in front. */
  readonly cacheName: string;
  /** Applies what the log already holds; the service serves once this resolved. */
  recover(): Promise<void>;
  stop(): Promise<void>;
}

export function composeOptionsFrom(config: Config, logger: Logger, clock: Clock): ComposeOptions {
  return {
    dataDir: config.dataDir,
    databaseUrl: config.databaseUrl,
    seedSecret: config.seedSecret,
    limits: config.limits,
    openRate: config.openRate,
    requestRate: config.requestRate,
    requestsInFlightMax: config.requestsInFlightMax,
    clock,
    logger,
    kafka: config.kafkaBrokers === undefined ? undefined : { brokers: config.kafkaBrokers, topic: config.kafkaTopic, partitions: config.kafkaPartitions },
    redisUrl: config.redisUrl,
    runConsumer: config.role !== 'engine',
    runJobs: config.role !== 'ledger',
    servesPackets: config.role !== 'ledger',
    node: { id: config.nodeId, url: config.advertiseUrl },
    payments: paymentOptionsFrom(config),
    webhooksAllowPrivate: config.webhooksAllowPrivate,
  };
}

/** Opens every part; nothing is served until recover() has resolved. */
export async function composeHongbao(options: ComposeOptions): Promise<Hongbao> {
  const { logger, clock, limits } = options;
  const redis = options.redisUrl === undefined ? undefined : await connectRedis(options.redisUrl, logger);
  // Kafka before the database: it is the cheaper of the two to find unreachable, and an
  // embedded database costs seconds of CPU to open.
  const kafkaLog =
    options.kafka === undefined
      ? undefined
      : await openKafkaLog(options.kafka, logger).catch((error: unknown) => {
          redis?.disconnect();
          throw kafkaStartupError(error, options.kafka!.brokers);
        });
  // Everything that runs SQL lives in the storage thread; what comes back are proxies.
  const pending = new PendingCredits();
  let dispatcher: Dispatcher | undefined;
  // Made once the storage thread is up; its notices may only come after that.
  let streams: EventStreams | undefined;
  let lostStorage: ((error: Error) => void) | undefined;
  const storage = await StorageThread.start(
    {
      dataDir: options.dataDir,
      loadDataDir: options.loadDataDir,
      databaseUrl: options.databaseUrl,
      kafka: options.kafka,
      logLevel: logger.level,
    },
    {
      onApplied: (claims, durationMs) => {
        for (const claim of claims) pending.settle(claim.userId, claimTransferId(claim.packetId, claim.seq));
        metrics.ledgerApplySeconds.observe(durationMs / 1000);
      },
      onLost: (error) => lostStorage?.(error),
      onNotified: (users) => {
        streams?.wakeUsers(users);
        dispatcher?.poke();
      },
    },
  ).catch(async (error: unknown) => {
    await kafkaLog?.close().catch(() => {});
    redis?.disconnect();
    throw options.databaseUrl === undefined ? error : databaseStartupError(error, options.databaseUrl);
  });
  const { database, ledger, consumer } = storage;
  const eventStreams = new EventStreams(storage.notifications);
  streams = eventStreams;
  const webhooksAllowPrivate = options.webhooksAllowPrivate ?? true;
  // Wherever jobs run, webhooks are delivered (several processes share the schedule by lease).
  dispatcher =
    options.runJobs === false
      ? undefined
      : new Dispatcher({
          store: storage.notifications,
          clock,
          logger,
          allowPrivate: webhooksAllowPrivate,
          ...(options.webhookRetryDelayMs ? { retryDelayMs: options.webhookRetryDelayMs } : {}),
          metrics: {
            delivered: (lagMs) => {
              metrics.webhookDeliveries.inc({ outcome: 'delivered' });
              metrics.webhookLagSeconds.observe(lagMs / 1000);
            },
            failed: () => metrics.webhookDeliveries.inc({ outcome: 'failed' }),
            dead: () => metrics.webhookDeliveries.inc({ outcome: 'dead' }),
          },
        });
  const log: AppendLog = kafkaLog ?? storage.log!;
  // Redis is a cache: its failures never fail a request, but they are logged and counted.
  const cacheFailures = { count: 0 };
  const onCacheError = (error: unknown) => {
    cacheFailures.count += 1;
    logger.debug({ err: error }, 'redis command failed; answering without the cache');
  };
  const role = options.servesPackets === false ? 'ledger' : options.runConsumer === false ? 'engine' : 'all';
  const self = { nodeId: options.node?.id ?? `hongbao-${process.pid}`, url: options.node?.url ?? '', role } as const;
  // Services mode is a cluster, of one node or many: each slot (partition) is written by the one
  // node Kafka's group assigned it to, through a producer the broker fences (docs/decisions.md).
  let engine: Engine | undefined;
  const cluster =
    kafkaLog === undefined
      ? undefined
      : new ClusterNode({ log: kafkaLog, self, clientId: `${options.kafka!.clientId ?? 'hongbao'}-${self.nodeId}`, consumer, engine: () => engine, logger });
  const committer: Committer = cluster?.committer ?? new GroupCommitter(log);
  const packetIdKey = packetIdKeyFrom(options.seedSecret);
  engine = new Engine({
    limits,
    mayExist: (packetId) => checkPacketId(packetIdKey, packetId) !== 'forged',
    clock,
    seedFor: (packetId) => packetSeed(options.seedSecret, packetId),
    commit: (event, onFailure) => committer.submit(event, onFailure),
    source: {
      load: async (packetId) => {
        // In a cluster: only once the slot is this node's, fenced and caught up.
        const generation = await cluster?.beforeLoad(packetId);
        // Rebuild only from a ledger that has every event the log already holds for this packet.
        await consumer.waitApplied(await log.headFor(packetId), ACTIVATION_CATCH_UP_TIMEOUT_MS);
        const stored = await ledger.load(packetId);
        if (generation !== undefined) cluster!.afterLoad(packetId, generation);
        return stored;
      },
    },
    onClaimDecided: (claim) => pending.add(claim.userId, claimTransferId(claim.packetId, claim.seq), claim.amountFen),
    onClaimFailed: (claim) => pending.settle(claim.userId, claimTransferId(claim.packetId, claim.seq)),
    ...(redis ? { cache: new RedisPacketCache(redis, onCacheError) } : {}),
  });
  const metrics = createServiceMetrics({
    engine,
    committer,
    consumer,
    log,
    cacheFailures,
    slots: cluster?.slots,
    openStreams: () => eventStreams.count,
    retriesPending: () => storage.notifications.retriesPending(),
  });
  // A per-user token bucket: in Redis (shared by every process) when there is one, with the
  // process's own bucket deciding whenever Redis does not answer.
  const perUserLimiter = (rate: OpenRate, redisKeyPrefix: string): RateLimiter => {
    const local = new TokenBucketLimiter(rate.burst, rate.perSecond);
    return redis ? new RedisRateLimiter(redis, rate.burst, rate.perSecond, local, onCacheError, redisKeyPrefix) : local;
  };
  const openRate = options.openRate ?? DEFAULT_OPEN_RATE;
  const openLimiter = options.openLimiter ?? perUserLimiter(openRate, 'rl:');
  const requestRate = options.requestRate ?? DEFAULT_REQUEST_RATE;
  const requestLimiter = perUserLimiter(requestRate, 'rq:');
  const admission = new UserAdmission(requestLimiter, requestRate, options.requestsInFlightMax ?? DEFAULT_REQUESTS_IN_FLIGHT_MAX, () => clock.now());
  // In a cluster each node refunds only the packets of its own slots: expiry follows the owner.
  const expireDue = expiryPass(
    async (nowMs, limit) => {
      const due = await ledger.duePacketIds(nowMs, limit);
      return cluster === undefined ? due : due.filter((packetId) => cluster.decidesHere(packetId));
    },
    engine,
    clock,
  );
  const payments = new PaymentDesk({
    providers: paymentProviders(options.payments),
    settings: {
      timeoutMs: options.payments?.timeoutMs ?? 900_000,
      resweepMs: options.payments?.resweepMs ?? 5_000,
      notifyUrl: (provider) => `${options.payments?.engineUrl ?? ''}/v1/payments/${provider}/notify`,
    },
    ledger,
    engine,
    clock,
    logger,
    metrics,
    decidesHere: (packetId) => cluster === undefined || cluster.decidesHere(packetId),
  });
  const settleBookedPending = async () => {
    const some = pending.some(PENDING_CHECK_BATCH_MAX);
    if (some.length === 0) return;
    const booked = new Set(await ledger.bookedClaims(some.map((entry) => entry.transferId)));
    for (const entry of some) if (booked.has(entry.transferId)) pending.settle(entry.userId, entry.transferId);
  };
  const settlePayments = async () => {
    await payments.timeoutPass();
    await payments.resweepPass();
  };
  const service = new Service({
    payments,
    notifications: storage.notifications,
    streams: eventStreams,
    onEventsRecorded: (users) => {
      eventStreams.wakeUsers(users);
      dispatcher?.poke();
    },
    webhooksAllowPrivate,
    limits,
    clock,
    ledger,
    engine,
    pending,
    openLimiter,
    openRate,
    admission,
    packetIdKey,
    metrics,
    expireDue,
    placement: cluster?.placement ?? singleNode({ id: self.nodeId, url: self.url, role }),
    checkDependencies: async () => {
      if (redis !== undefined && redis.status !== 'ready') throw new Error(`redis is ${redis.status}`);
    },
  });

  lostStorage = (error) => {
    service.serving = false;
    service.notServingReason = 'the storage thread stopped';
    if (options.onStorageLost !== undefined) return options.onStorageLost(error);
    logger.error({ err: error }, 'the storage thread stopped; no longer serving');
  };
  const jobs: PeriodicJob[] = [];
  const onJobError = (error: unknown) => logger.warn({ err: error }, 'job pass failed; retrying next tick');
  // The table log on a Postgres server has no slots: one engine process serves it, the holder
  // of the log's engine lock (docs/decisions.md). On Kafka the slots' fence replaces it. Embedded
  // PGlite needs none: its folder lock already allows one process.
  const engineLock =
    options.servesPackets !== false && database.kind === 'postgres' && cluster === undefined
      ? new EngineLock(
          options.databaseUrl!,
          ENGINE_LOCK_NAME,
          (error) => {
            service.serving = false;
            if (options.onEngineLockLost !== undefined) return options.onEngineLockLost(error);
            logger.error({ err: error }, 'lost the engine lock; no longer serving packets');
            service.notServingReason = 'lost the engine lock';
          },
        )
      : undefined;
  let stopped = false;
  let wakeWaiter: (() => void) | undefined;
  const takeEngineLock = async () => {
    while (!stopped) {
      const attempt = await engineLock!.tryTake().catch((error: unknown) => {
        logger.warn({ err: error }, 'taking the engine lock failed; retrying');
        return { taken: false as const, holder: `unknown (the lock could not be asked: ${(error as Error).message})` };
      });
      if (attempt.taken) return true;
      const reason = `standby: ${engineLock!.name} is held by ${attempt.holder}; one engine process serves a log at a time, this one takes over when that one stops`;
      if (service.notServingReason !== reason) logger.warn(reason);
      service.notServingReason = reason;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ENGINE_LOCK_RETRY_MS);
        wakeWaiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return false;
  };
  return {
    service,
    database,
    log,
    committer,
    engine,
    cluster,
    storage,
    consumer,
    ledger,
    cacheName: redis ? `redis (${new URL(options.redisUrl!).host})` : 'in-process',
    async recover() {
      if (options.runConsumer !== false) await consumer.start();
      await consumer.waitAppliedAll(await log.heads(), RECOVERY_TIMEOUT_MS);
      // A member of the engine group from now on (a ledger-only node too, to be listed, with no slots).
      await cluster?.start();
      if (options.servesPackets === false) {
        // A ledger-only process books the log; answering opens here would put a second engine on it.
        service.notServingReason = 'this process is ROLE=ledger: it books the event log and serves no API requests; send them to an engine process';
        service.readyWithoutServing = true;
        return;
      }
      // Activations still wait for the ledger to reach each packet's head, so a process that
      // waited here long (the previous holder kept appending) rebuilds every actor correctly.
      if (engineLock !== undefined && !(await takeEngineLock())) return;
      if (options.runJobs !== false) {
        jobs.push(every(EXPIRY_INTERVAL_MS, expireDue, onJobError));
        if (options.payments !== undefined) jobs.push(every(PAYMENT_JOBS_INTERVAL_MS, settlePayments, onJobError));
        // Without a consumer here nothing tells this process that its claims were booked: ask.
        if (options.runConsumer === false) jobs.push(every(PENDING_CHECK_INTERVAL_MS, settleBookedPending, onJobError));
        dispatcher?.start();
        jobs.push(every(NOTIFICATIONS_PRUNE_INTERVAL_MS, async () => void (await storage.notifications.pruneNotifications(clock.now())), onJobError));
        jobs.push(every(ACTOR_IDLE_MS / 4, async () => void engine.evictIdle(ACTOR_IDLE_MS), onJobError));
      }
      service.serving = true;
    },
    async stop() {
      service.serving = false;
      stopped = true;
      wakeWaiter?.();
      await Promise.all(jobs.map((job) => job.stop()));
      await dispatcher?.stop();
      await cluster?.stop();
      await consumer.stop();
      await kafkaLog?.close();
      await engineLock?.release();
      await storage.close();
      redis?.disconnect();
    },
  };
}

/** Opens and recovers: ready to serve when this resolves. */
export async function startHongbao(options: ComposeOptions): Promise<Hongbao> {
  const hongbao = await composeHongbao(options);
  await hongbao.recover();
  return hongbao;
}

async function connectRedis(url: string, logger: Logger): Promise<Redis> {
  const redis = createRedis(url, (error) => logger.debug({ err: error }, 'redis'));
  // Redis is a cache: start without it if it is down; the client keeps reconnecting.
  await redis.connect().catch((error: unknown) => logger.warn({ err: error }, 'redis unreachable at start; serving without it'));
  return redis;
}
