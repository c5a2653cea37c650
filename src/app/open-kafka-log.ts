// Opens the Kafka log in services mode, loaded only then: the embedded default never touches kafkajs.
import type { Logger } from 'pino';
import type { KafkaLog } from '../log/kafka-log.js';

export interface KafkaSettings {
  readonly brokers: readonly string[];
  readonly topic: string;
  readonly partitions: number;
  /** Names this client in the broker's logs. */
  readonly clientId?: string;
}

/** One consumer group per topic: a group shared by consumers of different topics gets partitions assigned to members that never read them. */
export async function openKafkaLog(settings: KafkaSettings, logger: Logger, reader = 'ledger'): Promise<KafkaLog> {
  const { KafkaLog } = await import('../log/kafka-log.js');
  return KafkaLog.open({
    brokers: settings.brokers,
    topic: settings.topic,
    partitions: settings.partitions,
    clientId: settings.clientId ?? 'hongbao',
    groupId: `${settings.topic}.${reader}`,
    logger,
  });
}

