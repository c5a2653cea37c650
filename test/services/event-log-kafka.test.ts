// Runs the EventLog conformance suite against the real Kafka broker (scripts/services.sh up).
// Each run gets a fresh topic and consumer group; the topic is deleted afterwards.
// No broker, no skip: KafkaLog.open rejects within seconds and every test fails.
import { randomBytes } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { describeEventLog } from '../support/event-log-suite.js';
import { KafkaLog } from '../../src/log/kafka-log.js';
import { kafkaSlotProducers } from '../../src/log/kafka-slot-producer.js';

const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',').map((broker) => broker.trim()).filter(Boolean);
// Errors only: the redelivery test's simulated handler failures are logged as warnings by design.
const logger = pino({ level: 'error' });

async function deleteTopic(topic: string): Promise<void> {
  const admin = new Kafka({
    clientId: 'hongbao-test-cleanup',
    brokers,
    connectionTimeout: 3_000,
    requestTimeout: 5_000,
    retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 1_000, factor: 0.2, multiplier: 2 },
    logLevel: logLevel.NOTHING,
  }).admin();
  await admin.connect();
  try {
    await admin.deleteTopics({ topics: [topic], timeout: 5_000 });
  } finally {
    await admin.disconnect();
  }
}

describeEventLog('kafka', async () => {
  const run = `${Date.now()}-${randomBytes(4).toString('hex')}`;
  const options = {
    brokers,
    topic: `hongbao-test-${run}`,
    partitions: 8,
    clientId: `hongbao-test-${run}`,
    groupId: `hongbao-test-ledger-${run}`,
    logger,
  };
  const log = await KafkaLog.open(options);
  return {
    log,
    reopen: () => KafkaLog.open(options),
    cleanup: async () => {
      await log.close();
      await deleteTopic(options.topic);
    },
  };
});

describe('kafka log heads after a committed transaction', () => {
  it('a head read right after a slot commit covers it: a reader that reached the head has the event (the LSO lags the markers)', async () => {
    const run = `${Date.now()}-${randomBytes(4).toString('hex')}`;
    const topic = `hongbao-test-heads-${run}`;
    const log = await KafkaLog.open({ brokers, topic, partitions: 2, clientId: `hongbao-test-${run}`, groupId: `hongbao-test-heads-${run}`, logger });
    let committedBySlot = 0;
    const producer = kafkaSlotProducers({
      brokers,
      clientId: `hongbao-test-${run}`,
      topic,
      logger,
      onCommitted: (slot, nextOffset) => {
        committedBySlot += 1;
        log.noteCommitted(slot, nextOffset);
      },
    }).create(0);
    const seen = new Set<number>();
    let position = 0n;
    const subscription = await log.subscribe([], async (batch) => {
      for (const event of batch.events) if (event.kind === 'claim') seen.add(event.seq);
      for (const entry of batch.positions) if (entry.partition === 0 && BigInt(entry.nextOffset) > position) position = BigInt(entry.nextOffset);
    });
    try {
      await producer.fence();
      let coveredBeforeSeen = 0;
      for (let seq = 1; seq <= 60; seq += 1) {
        await producer.commit([{ kind: 'claim', packetId: 'heads-packet', seq, userId: `u${seq}`, amountFen: 1, atMs: Date.now() }]);
        const head = BigInt((await log.heads()).find((entry) => entry.partition === 0)!.nextOffset);
        const deadline = Date.now() + 10_000;
        while (position < head && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 2));
        expect(position >= head).toBe(true);
        // What waitApplied(head) promises: the reader that reached the head holds this commit.
        if (!seen.has(seq)) coveredBeforeSeen += 1;
      }
      expect(committedBySlot).toBe(60);
      expect(coveredBeforeSeen).toBe(0);
    } finally {
      await subscription.stop();
      await producer.close();
      await log.close();
      await deleteTopic(topic);
    }
  }, 120_000);
});
