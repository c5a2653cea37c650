// The EventLog on Kafka (kafkajs): one topic, key = packetId, so one packet's events stay
// ordered in one partition. Its own append() is one idempotent producer (acks=all, one request
// in flight) for tests and benches; the engine appends through the fenced per-slot
// transactional producers of slot-writers.ts, so readers are read_committed. The consumer
// belongs to a group only because kafkajs cannot read without one: it never commits offsets to
// Kafka. The ledger stores its positions in Postgres and hands subscribe() a function that
// reads them; this log reads them again and seeks there every time the group assigns partitions.
import {
  CompressionTypes,
  Kafka,
  PartitionAssigners,
  Partitioners,
  type Admin,
  type Consumer,
  type EachBatchPayload,
  type PartitionMetadata,
} from 'kafkajs';
import { pino } from 'pino';
import { readStartPositions, type EventLog, type LogBatch, type LogPosition, type StartPositions, type Subscription } from './event-log.js';
import {
  ACK_TIMEOUT_MS,
  ACKS_ALL,
  APPEND_DEADLINE_MS,
  clientConfig,
  METADATA_MAX_AGE_MS,
  ProducerSession,
  RETRY,
  type KafkaLogLogger,
} from './kafka-client.js';
import type { PacketEvent } from './events.js';
import { gatherBatches } from './gather-batches.js';
import { scanKafka } from './kafka-scan.js';

export { APPEND_DEADLINE_MS } from './kafka-client.js';

export type { KafkaLogLogger } from './kafka-client.js';

export interface KafkaLogOptions {
  readonly brokers: readonly string[];
  readonly topic: string;
  /** Partitions when the topic is created; an existing topic keeps (and is used with) its own count. */
  readonly partitions: number;
  readonly clientId: string;
  readonly groupId: string;
  /** Replication factor when the topic is created. 1 fits the single local broker only. */
  readonly replicationFactor?: number;
  readonly logger?: KafkaLogLogger;
  /** Batches of different partitions that one subscription hands its handler at once; PARTITIONS_CONSUMED_CONCURRENTLY unless set (the bench measures others). */
  readonly partitionsConsumedConcurrently?: number;
}

// ---- topic
const DEFAULT_REPLICATION_FACTOR = 1;
const CREATE_TOPIC_TIMEOUT_MS = 10_000;
const TOPIC_POLL_MS = 100;

// ---- consumer
/** The broker's group.min.session.timeout.ms is 6 s; a crashed member's partitions move after this. */
const SESSION_TIMEOUT_MS = 10_000;
const HEARTBEAT_INTERVAL_MS = 1_000;
/** How long the coordinator waits for members to rejoin during a rebalance. */
const REBALANCE_TIMEOUT_MS = 10_000;
/** Fetch long-poll: an idle fetch returns after this, which also bounds how long stop() waits. */
const MAX_WAIT_MS = 50;
/** About 200 events: the broker holds a fetch until it has this much (or MAX_WAIT_MS passed), so the ledger applies bigger batches. */
const MIN_BYTES = 32 * 1024;
const MAX_BYTES = 10 * 1024 * 1024;
const MAX_BYTES_PER_PARTITION = 1024 * 1024;
/** Pause before a batch whose handler failed is read again. */
const HANDLER_RETRY_DELAY_MS = 200;
/** Tries at storing a position past records without events, HANDLER_RETRY_DELAY_MS apart, before they are read again. */
export const SKIPPED_POSITION_ATTEMPTS = 3;
/** Pause before the start positions are read again for an assignment (the database did not answer). */
const POSITIONS_RETRY_DELAY_MS = 1_000;
/**
 * Ledger transactions one consumer runs at once, each with the gathered batches of many
 * partitions (gather-batches.ts): two transaction streams per consumer. One stream leaves Postgres idle while the consumer fetches and parses
 * the next batch; two applied 1.34–1.43× as many claims/s on the 2-core bench machine and kept both
 * cores busy (bench/RESULTS.md, "Ledger consumers: 1 vs 2"). Batches of different partitions
 * share no packet and lock shared wallets in one order (ledger-consumer.ts, applyBatch).
 */
export const PARTITIONS_CONSUMED_CONCURRENTLY = 2;
/** Packets whose partition partitionOf remembers. */
const PARTITIONS_REMEMBERED_MAX = 100_000;
/** Pause before a consumer that kafkajs gave up on is started afresh. */
const CONSUMER_RESTART_DELAY_MS = 1_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Errors a topic answers while it is being created (or a metadata refresh is behind). */
const TOPIC_NOT_READY = new Set(['UNKNOWN_TOPIC_OR_PARTITION', 'LEADER_NOT_AVAILABLE']);
function isRetriableTopicError(error: unknown): boolean {
  // kafkajs wraps the broker's error in KafkaJSNumberOfRetriesExceeded once its retries are spent.
  // By name, not instanceof: kafkajs's error classes are not named exports under Node's ESM loader.
  for (let cause = error; cause instanceof Error; cause = (cause as { cause?: unknown }).cause) {
    if (TOPIC_NOT_READY.has((cause as { type?: string }).type ?? '') || cause.name === 'KafkaJSTopicMetadataNotLoaded') return true;
  }
  return false;
}

/** Waits until every partition of the topic has a leader; returns the partition count. */
async function waitForLeaders(admin: Admin, topic: string): Promise<number> {
  const deadline = Date.now() + CREATE_TOPIC_TIMEOUT_MS;
  for (;;) {
    try {
      const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
      const partitions = metadata.topics.find((found) => found.name === topic)?.partitions ?? [];
      if (partitions.length > 0 && partitions.every((partition) => partition.leader >= 0)) return partitions.length;
    } catch (error) {
      if (!isRetriableTopicError(error) || Date.now() >= deadline) throw error;
    }
    if (Date.now() >= deadline) throw new Error(`kafka topic ${topic} has no leader for every partition after ${CREATE_TOPIC_TIMEOUT_MS} ms`);
    await sleep(TOPIC_POLL_MS);
  }
}

export class KafkaLog implements EventLog {
  readonly name = 'kafka';
  private session: ProducerSession | undefined;
  /** Settles when the last append has settled: appends run one after another. */
  private appendTail: Promise<void> = Promise.resolve();
  private readonly subscriptions = new Set<Subscription>();
  private closed = false;
  /** packet id → partition (partitionOf), at most PARTITIONS_REMEMBERED_MAX. */
  private readonly partitions = new Map<string, number>();
  /** Ends of the transactions this process committed, by partition (noteCommitted). */
  private readonly committedEnds = new Map<number, string>();
  /** The same murmur2 partitioner kafkajs uses by key, kept here so headFor finds the partition append chose. */
  private readonly partitioner = Partitioners.DefaultPartitioner();
  private readonly partitionTable: PartitionMetadata[];

  private constructor(
    private readonly kafka: Kafka,
    private readonly admin: Admin,
    private readonly options: KafkaLogOptions,
    private readonly logger: KafkaLogLogger,
    readonly partitionCount: number,
  ) {
    this.partitionTable = Array.from({ length: partitionCount }, (_, partitionId) => ({
      partitionErrorCode: 0,
      partitionId,
      leader: 0,
      replicas: [0],
      isr: [0],
    }));
  }

  /** Connects, creates the topic if it is missing, and connects the producer. Rejects if Kafka is unreachable. */
  static async open(options: KafkaLogOptions): Promise<KafkaLog> {
    const logger = options.logger ?? pino({ name: 'kafka-log', level: 'warn' });
    const kafka = new Kafka(clientConfig(options, logger));
    const admin = kafka.admin({ retry: RETRY });
    await admin.connect();
    try {
      // Create only if missing: creating an existing topic works, but kafkajs logs the broker's
      // TOPIC_ALREADY_EXISTS answer as an error on every start.
      if (!(await admin.listTopics()).includes(options.topic)) {
        try {
          await admin.createTopics({
            topics: [
              {
                topic: options.topic,
                numPartitions: options.partitions,
                replicationFactor: options.replicationFactor ?? DEFAULT_REPLICATION_FACTOR,
              },
            ],
            validateOnly: false,
            waitForLeaders: true,
            timeout: CREATE_TOPIC_TIMEOUT_MS,
          });
        } catch (error) {
          // kafkajs's leader wait gives up on UNKNOWN_TOPIC_OR_PARTITION, which a just-created
          // topic can answer until its metadata has spread; waitForLeaders below waits properly.
          if (!isRetriableTopicError(error)) throw error;
        }
      }
      const partitionCount = await waitForLeaders(admin, options.topic);
      if (partitionCount !== options.partitions) {
        logger.warn(
          { topic: options.topic, configured: options.partitions, actual: partitionCount },
          'kafka topic exists with another partition count; using the topic’s own',
        );
      }
      const session = new ProducerSession(options, logger);
      try {
        await session.connect();
      } catch (error) {
        session.discard();
        throw error;
      }
      const log = new KafkaLog(kafka, admin, options, logger, partitionCount);
      log.session = session;
      return log;
    } catch (error) {
      await admin.disconnect().catch(() => {});
      throw error;
    }
  }

  get topic(): string {
    return this.options.topic;
  }

  get brokers(): readonly string[] {
    return this.options.brokers;
  }

  /** The partition every event of this packet goes to (remembered: several parts ask it on every open). */
  partitionOf(packetId: string): number {
    const known = this.partitions.get(packetId);
    if (known !== undefined) return known;
    const partition = this.partitioner({
      topic: this.options.topic,
      partitionMetadata: this.partitionTable,
      message: { key: packetId, value: null },
    });
    // Bounded: forgotten wholesale when full, and computed again (murmur2 is a pure function of the id).
    if (this.partitions.size >= PARTITIONS_REMEMBERED_MAX) this.partitions.clear();
    this.partitions.set(packetId, partition);
    return partition;
  }

  /**
   * One produce request (acks=all) for all the events, keyed by packet. Resolves once acknowledged;
   * rejects within APPEND_DEADLINE_MS otherwise. Appends run one after another, in call order.
   * A rejected append's outcome is unknown: its records may have reached Kafka, but never later
   * than its rejection (its connections are cut then), so never behind a later append.
   */
  async append(events: readonly PacketEvent[]): Promise<void> {
    if (this.closed) throw new Error('kafka log is closed');
    if (events.length === 0) return;
    const messages = events.map((event) => ({
      key: event.packetId,
      value: JSON.stringify(event),
      partition: this.partitionOf(event.packetId),
    }));
    const previous = this.appendTail;
    let release: () => void = () => {};
    this.appendTail = new Promise<void>((resolve) => (release = resolve));
    const state: { session: ProducerSession | undefined; expired: boolean } = { session: undefined, expired: false };
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        state.expired = true;
        reject(new Error(`kafka append of ${events.length} events not acknowledged within ${APPEND_DEADLINE_MS} ms`));
      }, APPEND_DEADLINE_MS);
    });
    const attempt = (async () => {
      await previous;
      if (state.expired) return;
      const session = (this.session ??= new ProducerSession(this.options, this.logger));
      state.session = session;
      await session.connect();
      if (state.expired) return;
      await session.producer.send({
        topic: this.options.topic,
        messages,
        acks: ACKS_ALL,
        timeout: ACK_TIMEOUT_MS,
        compression: CompressionTypes.None,
      });
    })();
    try {
      await Promise.race([attempt, deadline]);
    } catch (error) {
      attempt.catch(() => {});
      // Cut the failed producer's connections: whatever kafkajs still retries dies here. And the
      // next append gets a new producer id: kafkajs rolls its sequence numbers back after a failed
      // request, so if the broker did write these records, the next records would reuse their
      // sequence numbers and be dropped as duplicates while acknowledged.
      const session = state.session;
      if (session) {
        session.discard();
        if (this.session === session) this.session = undefined;
      }
      if (state.expired) this.logger.error({ err: error, topic: this.options.topic }, 'kafka append timed out');
      throw error;
    } finally {
      clearTimeout(timer);
      release();
    }
  }

  async subscribe(from: StartPositions, handler: (batch: LogBatch) => Promise<void>): Promise<Subscription> {
    if (this.closed) throw new Error('kafka log is closed');
    const topic = this.options.topic;
    /** Next offset per partition that this subscription's handler accepted: no seek goes behind it. */
    const accepted = new Map<number, bigint>();
    const accept = (partition: number, nextOffset: bigint) => {
      if (nextOffset > (accepted.get(partition) ?? 0n)) accepted.set(partition, nextOffset);
    };
    /**
     * Per partition, the storing of a position past records without events, while it runs: the
     * partition's next batch waits for it, so the handler sees each partition's positions in order.
     */
    const skipping = new Map<number, Promise<void>>();
    /** The partitions' batches of one fetch, applied together (gather-batches.ts), in at most this many transactions at once. */
    const applyGathered = gatherBatches(handler, this.options.partitionsConsumedConcurrently ?? PARTITIONS_CONSUMED_CONCURRENTLY);
    let running = true;
    let consumer: Consumer | undefined;
    /** Counts the group's assignments to this subscription; work begun for an older one is dropped. */
    let assignments = 0;
    /** Pauses end early on stop(). */
    const wakers = new Set<() => void>();
    const pause = (ms: number) =>
      new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          wakers.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, ms);
        wakers.add(wake);
      });

    const eachBatch = async ({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload) => {
      await skipping.get(batch.partition);
      if (!running || !isRunning() || isStale()) return;
      const firstOffset = batch.messages[0]?.offset;
      if (firstOffset === undefined) return;
      // lastOffset() counts the records kafkajs filtered out (markers, aborted records) at the end too.
      const nextOffset = (BigInt(batch.lastOffset()) + 1n).toString();
      try {
        const events = batch.messages.map((message) => {
          if (!message.value) throw new Error(`kafka record ${batch.partition}@${message.offset} has no value`);
          return JSON.parse(message.value.toString('utf8')) as PacketEvent;
        });
        await applyGathered({ events, positions: [{ partition: batch.partition, nextOffset }] });
      } catch (error) {
        this.logger.warn(
          { err: error, topic, partition: batch.partition, offset: firstOffset },
          'event log handler failed; the batch is read again',
        );
        // Nothing resolved: read the same records again, explicitly, after a pause.
        if (consumer && running) consumer.seek({ topic, partition: batch.partition, offset: firstOffset });
        await pause(HANDLER_RETRY_DELAY_MS);
        return;
      }
      accept(batch.partition, BigInt(nextOffset));
      resolveOffset(batch.lastOffset());
      await heartbeat();
    };

    /**
     * A fetch of a partition that held only records without events (a transaction's commit or
     * abort marker, the records of an aborted transaction): kafkajs resolves it without calling
     * eachBatch. The handler gets it as a batch of no events, so the stored position reaches the
     * partition's end (waitApplied(head) returns on an idle partition). Tried a bounded number
     * of times; then the records are read again, which tries anew.
     */
    const skipPast = (created: Consumer, assignment: number, partition: number, firstOffset: string, lastOffset: string) => {
      const nextOffset = (BigInt(lastOffset) + 1n).toString();
      const stored = (async () => {
        await skipping.get(partition);
        for (let attempt = 1; running; attempt += 1) {
          try {
            await handler({ events: [], positions: [{ partition, nextOffset }] });
            accept(partition, BigInt(nextOffset));
            return;
          } catch (error) {
            const details = { err: error, topic, partition, offset: firstOffset, attempt };
            if (attempt < SKIPPED_POSITION_ATTEMPTS) {
              this.logger.warn(details, 'storing the position past records without events failed; retrying');
              await pause(HANDLER_RETRY_DELAY_MS);
              continue;
            }
            this.logger.error(details, 'storing the position past records without events failed; they are read again');
            if (running && consumer === created && assignments === assignment) created.seek({ topic, partition, offset: firstOffset });
            return;
          }
        }
      })();
      skipping.set(partition, stored);
      void stored.finally(() => {
        if (skipping.get(partition) === stored) skipping.delete(partition);
      });
    };

    /** The start positions, read again until they answer, or undefined once this assignment is over. */
    const readPositions = async (isCurrent: () => boolean): Promise<readonly LogPosition[] | undefined> => {
      for (;;) {
        try {
          const positions = await readStartPositions(from);
          return isCurrent() ? positions : undefined;
        } catch (error) {
          this.logger.warn({ err: error, topic }, 'reading the start positions failed; the assigned partitions wait');
          await pause(POSITIONS_RETRY_DELAY_MS);
          if (!isCurrent()) return undefined;
        }
      }
    };

    const start = async (): Promise<void> => {
      const created = this.consumerOf(this.options.groupId, async () => running);
      consumer = created;
      // Every (re)assignment starts where the positions stand NOW: another reader of the group may
      // have moved a partition since this one last held it. kafkajs emits GROUP_JOIN synchronously
      // at the end of every joinAndSync (first join, rejoin after a rebalance, after stale
      // metadata), before the generation's first fetch, so partitions paused here are not fetched
      // until resumed; pause, seek and resume only mark state that the next fetch reads (kafkajs
      // keeps pauses across assignments: an older assignment's read resumes nothing). The pause
      // lasts one read of the positions.
      created.on(created.events.GROUP_JOIN, ({ payload }) => {
        assignments += 1;
        const assignment = assignments;
        const partitions = payload.memberAssignment[topic] ?? [];
        if (partitions.length === 0) return;
        created.pause([{ topic, partitions }]);
        const isCurrent = () => running && consumer === created && assignments === assignment;
        void (async () => {
          const positions = await readPositions(isCurrent);
          if (positions === undefined) return;
          for (const partition of partitions) {
            const stored = BigInt(positions.find((position) => position.partition === partition)?.nextOffset ?? '0');
            const floor = accepted.get(partition) ?? 0n;
            created.seek({ topic, partition, offset: (stored > floor ? stored : floor).toString() });
          }
          created.resume([{ topic, partitions }]);
        })();
      });
      created.on(created.events.END_BATCH_PROCESS, ({ payload }) => {
        // batchSize counts the records left after filtering; eachBatch got every batch with some.
        // No first offset: only records before the fetch offset came back, nothing was skipped.
        if (payload.batchSize > 0 || payload.topic !== topic || payload.firstOffset === null) return;
        if (!running || consumer !== created) return;
        skipPast(created, assignments, payload.partition, payload.firstOffset, payload.lastOffset);
      });
      created.on(created.events.CRASH, ({ payload }) => {
        this.logger.error({ err: payload.error, topic, restart: payload.restart }, 'kafka consumer crashed');
        if (payload.restart || !running) return;
        // kafkajs gave up (a non-retriable error): start a fresh consumer, which reads the positions again.
        void (async () => {
          await created.disconnect().catch(() => {});
          await pause(CONSUMER_RESTART_DELAY_MS);
          while (running) {
            try {
              await start();
              return;
            } catch (error) {
              this.logger.error({ err: error, topic }, 'kafka consumer restart failed');
              await pause(CONSUMER_RESTART_DELAY_MS);
            }
          }
        })();
      });
      try {
        await created.connect();
        // fromBeginning only matters if a seek were missed: partitions not listed start at 0.
        await created.subscribe({ topics: [topic], fromBeginning: true });
        await created.run({
          autoCommit: false,
          eachBatchAutoResolve: false,
          // Every partition of a fetch at once, so that their batches meet in one transaction (applyGathered).
          partitionsConsumedConcurrently: this.partitionCount,
          eachBatch,
        });
      } catch (error) {
        await created.disconnect().catch(() => {});
        throw error;
      }
      // stop() came while a restart was starting this consumer.
      if (!running) await created.disconnect();
    };

    await start();
    const subscription: Subscription = {
      stop: async () => {
        if (!running) return;
        running = false;
        for (const wake of [...wakers]) wake();
        await consumer?.disconnect();
        await Promise.all(skipping.values());
        this.subscriptions.delete(subscription);
      },
    };
    this.subscriptions.add(subscription);
    return subscription;
  }

  /** A consumer of the given group with this log's settings; it never commits offsets. */
  private consumerOf(groupId: string, restartOnFailure: () => Promise<boolean>): Consumer {
    return this.kafka.consumer({
      groupId,
      partitionAssigners: [PartitionAssigners.roundRobin],
      sessionTimeout: SESSION_TIMEOUT_MS,
      rebalanceTimeout: REBALANCE_TIMEOUT_MS,
      heartbeatInterval: HEARTBEAT_INTERVAL_MS,
      metadataMaxAge: METADATA_MAX_AGE_MS,
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: MAX_WAIT_MS,
      minBytes: MIN_BYTES,
      maxBytes: MAX_BYTES,
      maxBytesPerPartition: MAX_BYTES_PER_PARTITION,
      readUncommitted: false,
      retry: { ...RETRY, restartOnFailure },
    });
  }

  /** See EventLog.scan and kafka-scan.ts: a throwaway group, deleted afterwards. Covers what retention kept. */
  async scan(until: readonly LogPosition[], visit: (events: readonly PacketEvent[]) => Promise<void> | void): Promise<void> {
    if (this.closed) throw new Error('kafka log is closed');
    await scanKafka(
      {
        admin: this.admin,
        topic: this.options.topic,
        // A scan that kafkajs gave up on fails; the caller (reconciliation) runs again later.
        consumerOf: (groupId) => this.consumerOf(groupId, async () => false),
        groupIdPrefix: this.options.groupId,
        onCleanupError: (error, groupId) => this.logger.warn({ err: error, groupId }, 'kafka scan group not deleted'),
      },
      until,
      visit,
    );
  }

  async headFor(packetId: string): Promise<LogPosition> {
    const partition = this.partitionOf(packetId);
    const head = (await this.heads()).find((position) => position.partition === partition);
    if (!head) throw new Error(`kafka topic ${this.options.topic} has no partition ${partition}`);
    return head;
  }

  /**
   * Each partition's end as a read_committed reader will see it: Kafka's last stable offset (what
   * kafkajs's admin lists), or past the transactions this process saw committed if further
   * (noteCommitted): those are acknowledged already, and the reader gets them once their markers land.
   */
  async heads(): Promise<LogPosition[]> {
    const offsets = await this.admin.fetchTopicOffsets(this.options.topic);
    return offsets
      .map((offset) => {
        const committed = this.committedEnds.get(offset.partition);
        const nextOffset = committed !== undefined && BigInt(committed) > BigInt(offset.high) ? committed : offset.high;
        return { partition: offset.partition, nextOffset };
      })
      .sort((left, right) => left.partition - right.partition);
  }

  /** A transaction of this process committed records of `partition` before `nextOffset` (kafka-slot-producer.ts). */
  noteCommitted(partition: number, nextOffset: string): void {
    const known = this.committedEnds.get(partition);
    if (known === undefined || BigInt(nextOffset) > BigInt(known)) this.committedEnds.set(partition, nextOffset);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.subscriptions].map((subscription) => subscription.stop()));
    await this.appendTail;
    await this.session?.close();
    this.session = undefined;
    await this.admin.disconnect();
  }
}
