// Runs the EventLog conformance suite against the real Kafka broker (scripts/services.sh up).
// Each run gets a fresh topic and consumer group; the topic is deleted afterwards.
// No broker, no skip: KafkaLog.open rejects within seconds and every test fails.
import { randomBytes } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { pino } from 'pino';
import { describeEventLog } from '../support/event-log-suite.js';
import { KafkaLog } from '../../src/log/kafka-log.js';

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
