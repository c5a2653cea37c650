// What every kafkajs client of the event log shares: bounded timeouts and retries, the log
// adapter (routine broker answers are not errors), and a producer whose connections can be cut.
import net from 'node:net';
import tls from 'node:tls';
import { Kafka, logLevel, Partitioners, type ISocketFactory, type KafkaConfig, type LogEntry, type Producer, type ProducerConfig, type RetryOptions } from 'kafkajs';

/** The little the log needs from a logger; a pino Logger fits. */
export interface KafkaLogLogger {
  error(details: object, message: string): void;
  warn(details: object, message: string): void;
}

/** What a client is built from. */
export interface KafkaClientOptions {
  readonly brokers: readonly string[];
  readonly clientId: string;
}

// ---- client: every timeout bounded so that a dead broker fails an append in ~10 s, not minutes
/** TCP connect to a broker. */
export const CONNECTION_TIMEOUT_MS = 3_000;
/** A request without a response for this long fails (fetches get their long-poll time on top). */
export const REQUEST_TIMEOUT_MS = 5_000;
/** Retries of metadata, connect, admin and produce requests: 100, 200, 400, 800, 1000 ms (±20 %). */
export const RETRY: RetryOptions = { retries: 5, initialRetryTime: 100, maxRetryTime: 1_000, factor: 0.2, multiplier: 2 };
/** TCP keep-alive probe delay on broker connections (what kafkajs's own socket factory uses). */
const KEEP_ALIVE_MS = 60_000;
/** Cached topic metadata is refreshed at least this often. */
export const METADATA_MAX_AGE_MS = 30_000;

// ---- producer
/** How long the broker may wait for the in-sync replicas before it answers a produce (acks=all). */
export const ACK_TIMEOUT_MS = 5_000;
/** Hard cap of one append, connect and retries included: the caller hears "unavailable" by then. */
export const APPEND_DEADLINE_MS = 9_000;
/** acks=all: the leader answers once every in-sync replica has the records. */
export const ACKS_ALL = -1;

const CONCURRENT_TRANSACTIONS_MESSAGE =
  'The producer attempted to update a transaction while another concurrent operation on the same transaction was ongoing';

/** Expected at startup by design (bounded retries: an append must fail fast); not worth a warning. */
const EXPECTED_WARNINGS = ['Limiting retries for the idempotent producer'];
/**
 * Broker answers kafkajs logs as errors although they are routine: every heartbeat during a
 * rebalance answers REBALANCE_IN_PROGRESS (kafkajs then warns once that it re-joins).
 */
const ROUTINE_ERROR_ANSWERS = [
  'The group is rebalancing, so a rejoin is needed',
  // A transaction that follows a commit at once finds the coordinator still writing the commit
  // markers; kafkajs retries it after TRANSACTION_RETRY's first pause. Happens on every commit.
  CONCURRENT_TRANSACTIONS_MESSAGE,
];

export function kafkaLogCreator(logger: KafkaLogLogger, muted: () => boolean = () => false) {
  return () =>
    ({ namespace, level, log }: LogEntry) => {
      if (muted()) return;
      const { message, timestamp: _timestamp, logger: _logger, ...details } = log;
      if (level === logLevel.ERROR) {
        const answer = (details as { error?: unknown }).error;
        if (typeof answer === 'string' && ROUTINE_ERROR_ANSWERS.includes(answer)) return;
        if (ROUTINE_ERROR_ANSWERS.some((routine) => message.endsWith(routine))) return;
        logger.error({ kafka: namespace, ...details }, message);
      } else if (level === logLevel.WARN && !EXPECTED_WARNINGS.some((expected) => message.startsWith(expected))) {
        logger.warn({ kafka: namespace, ...details }, message);
      }
    };
}

export function clientConfig(options: KafkaClientOptions, logger: KafkaLogLogger): KafkaConfig {
  return {
    clientId: options.clientId,
    brokers: [...options.brokers],
    ssl: false,
    connectionTimeout: CONNECTION_TIMEOUT_MS,
    requestTimeout: REQUEST_TIMEOUT_MS,
    enforceRequestTimeout: true,
    retry: RETRY,
    logLevel: logLevel.WARN,
    logCreator: kafkaLogCreator(logger),
  };
}

/**
 * One idempotent producer on connections of its own. discard() cuts them and refuses new ones,
 * so a request that kafkajs is still retrying can never reach Kafka after its append failed.
 */
export class ProducerSession {
  readonly producer: Producer;
  private readonly sockets = new Set<net.Socket>();
  private cut = false;
  private connected: Promise<void> | undefined;

  /** `config` adds to (or overrides) the idempotent producer's settings, e.g. a transactionalId. */
  constructor(options: KafkaClientOptions, logger: KafkaLogLogger, config: ProducerConfig = {}) {
    const kafka = new Kafka({
      ...clientConfig(options, logger),
      socketFactory: this.socketFactory,
      // After discard(), the connection errors are ours: not worth logging.
      logCreator: kafkaLogCreator(logger, () => this.cut),
    });
    this.producer = kafka.producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      retry: RETRY,
      metadataMaxAge: METADATA_MAX_AGE_MS,
      ...config,
    });
  }

  /** Connects once; every caller shares the same attempt. */
  connect(): Promise<void> {
    this.connected ??= this.producer.connect();
    return this.connected;
  }

  /** Cuts every connection now; the producer never connects again. */
  discard(): void {
    if (this.cut) return;
    this.cut = true;
    for (const socket of this.sockets) socket.destroy(new Error('kafka producer discarded'));
    void this.producer.disconnect().catch(() => {});
  }

  async close(): Promise<void> {
    this.cut = true;
    await this.producer.disconnect();
  }

  // kafkajs's own factory, plus the sockets kept for discard() and no new ones after it.
  private readonly socketFactory: ISocketFactory = ({ host, port, ssl, onConnect }) => {
    if (this.cut) throw new Error('kafka producer discarded');
    const socket = ssl
      ? tls.connect({ host, port, ...(net.isIP(host) ? {} : { servername: host }), ...ssl }, onConnect)
      : net.connect({ host, port }, onConnect);
    socket.setKeepAlive(true, KEEP_ALIVE_MS);
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    return socket;
  };
}
