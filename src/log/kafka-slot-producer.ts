// One kafkajs transactional producer per owned slot: the broker-enforced fence of
// slot-writers.ts. Its transactionalId names the topic and the slot, never the node, so that
// whichever node takes the slot next — another node, or this node's restart with the same
// NODE_ID — fences every earlier writer by registering the same id.
import { CompressionTypes, type RetryOptions } from 'kafkajs';
import { ACK_TIMEOUT_MS, ACKS_ALL, APPEND_DEADLINE_MS, ProducerSession, type KafkaClientOptions, type KafkaLogLogger } from './kafka-client.js';
import type { PacketEvent } from './events.js';
import type { SlotProducer, SlotProducerFactory } from './slot-writers.js';

/**
 * How long the coordinator lets a transaction stay open before it aborts it (and bumps the
 * epoch). An open transaction holds back read_committed readers of its partition, so a writer
 * that froze mid-transaction stalls the ledger of its slot for at most this long.
 */
export const TRANSACTION_TIMEOUT_MS = 10_000;
/**
 * The transaction right after a commit finds the coordinator still writing the commit markers
 * (CONCURRENT_TRANSACTIONS) every time; kafkajs retries it after this pause. 10 ms rather than
 * kafkajs's 300 ms: measured here, 8 slots committing back to back reach ~57,000 events/s at
 * p50 25 ms with 10 ms, ~5 transactions/s per slot with 300 ms (docs/decisions.md).
 */
const TRANSACTION_RETRY: RetryOptions = { retries: 20, initialRetryTime: 10, maxRetryTime: 200, factor: 0.2, multiplier: 1.5 };

/** Kafka's answers that mean a newer writer registered this transactionalId. */
const FENCED_TYPES = new Set(['INVALID_PRODUCER_EPOCH', 'PRODUCER_FENCED', 'INVALID_PRODUCER_ID_MAPPING']);

export function isFencedError(error: unknown): boolean {
  // kafkajs may wrap the broker's answer (KafkaJSNumberOfRetriesExceeded, KafkaJSNonRetriableError).
  for (let cause = error, depth = 0; cause instanceof Error && depth < 5; cause = (cause as { cause?: unknown }).cause, depth += 1) {
    if (FENCED_TYPES.has((cause as { type?: string }).type ?? '')) return true;
    const original = (cause as { originalError?: unknown }).originalError;
    if (original instanceof Error && FENCED_TYPES.has((original as { type?: string }).type ?? '')) return true;
  }
  return false;
}

export function slotTransactionalId(topic: string, slot: number): string {
  return `${topic}.slot-${slot}`;
}

export interface KafkaSlotProducerOptions extends KafkaClientOptions {
  readonly topic: string;
  readonly logger: KafkaLogLogger;
  /**
   * A transaction committed: the slot's records end before `nextOffset`. Kafka's reported end of
   * a partition for read_committed readers (its last stable offset) may stay behind such a commit
   * for a moment (the coordinator writes the commit markers after it answers), so the log's heads
   * take this in too (KafkaLog.noteCommitted) and a wait for the head covers every acknowledged claim.
   */
  readonly onCommitted?: (slot: number, nextOffset: string) => void;
}

export function kafkaSlotProducers(options: KafkaSlotProducerOptions): SlotProducerFactory {
  return {
    create: (slot) => new KafkaSlotProducer(options, slot),
    isFenced: isFencedError,
  };
}

class KafkaSlotProducer implements SlotProducer {
  private readonly session: ProducerSession;

  constructor(
    private readonly options: KafkaSlotProducerOptions,
    private readonly slot: number,
  ) {
    this.session = new ProducerSession({ brokers: options.brokers, clientId: `${options.clientId}-slot-${slot}` }, options.logger, {
      transactionalId: slotTransactionalId(options.topic, slot),
      transactionTimeout: TRANSACTION_TIMEOUT_MS,
      retry: TRANSACTION_RETRY,
    });
  }

  fence(): Promise<void> {
    return this.withinDeadline('fence', async () => {
      await this.session.connect();
      // kafkajs sends InitProducerId on a producer's first transaction() only; aborting the
      // empty transaction sends nothing more. The coordinator bumps the epoch and aborts
      // whatever an earlier writer of this id left open before it answers.
      const registration = await this.session.producer.transaction();
      await registration.abort();
    });
  }

  commit(events: readonly PacketEvent[]): Promise<void> {
    const messages = events.map((event) => ({ key: event.packetId, value: JSON.stringify(event), partition: this.slot }));
    return this.withinDeadline('append', async () => {
      const transaction = await this.session.producer.transaction();
      const written = await transaction.send({ topic: this.options.topic, messages, acks: ACKS_ALL, timeout: ACK_TIMEOUT_MS, compression: CompressionTypes.None });
      await transaction.commit();
      const baseOffset = written.find((record) => record.partition === this.slot)?.baseOffset;
      if (baseOffset !== undefined) this.options.onCommitted?.(this.slot, (BigInt(baseOffset) + BigInt(messages.length)).toString());
    });
  }

  close(): Promise<void> {
    return this.session.close();
  }

  discard(): void {
    this.session.discard();
  }

  /** A step that does not finish in time has an unknown outcome: its connections are cut then. */
  private async withinDeadline(step: string, work: () => Promise<void>): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const attempt = work();
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.session.discard();
        reject(new Error(`kafka ${step} on slot ${this.slot} not done within ${APPEND_DEADLINE_MS} ms`));
      }, APPEND_DEADLINE_MS);
    });
    try {
      await Promise.race([attempt, deadline]);
    } catch (error) {
      attempt.catch(() => {});
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }
}
