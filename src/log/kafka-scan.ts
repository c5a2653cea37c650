// Reading a Kafka topic's history up to given offsets, for audits. kafkajs cannot assign
// partitions by hand (no consumer.assign): it reads only as a member of a group. So the scan
// joins a throwaway group of its own (never the ledger's), reads from the oldest record each
// partition still holds until it reached the target offsets, then leaves and deletes the group.
// Nothing is ever committed: the group holds no offsets that could outlive the scan.
// Retention: records Kafka already deleted are not read; the scan covers what the topic holds.
import { randomUUID } from 'node:crypto';
import type { Admin, Consumer, EachBatchPayload } from 'kafkajs';
import type { LogPosition } from './event-log.js';
import type { PacketEvent } from './events.js';

/** A scan that has not reached its targets by then fails (a broker away, a stuck partition). */
export const SCAN_DEADLINE_MS = 120_000;

export interface KafkaScanParts {
  readonly admin: Admin;
  readonly topic: string;
  /** Builds a consumer of the given group with the log's own settings. */
  readonly consumerOf: (groupId: string) => Consumer;
  /** The group id the throwaway group is named after, so an operator can tell whose it is. */
  readonly groupIdPrefix: string;
  readonly onCleanupError: (error: unknown, groupId: string) => void;
}

export async function scanKafka(
  parts: KafkaScanParts,
  until: readonly LogPosition[],
  visit: (events: readonly PacketEvent[]) => Promise<void> | void,
): Promise<void> {
  const { admin, topic } = parts;
  const oldest = new Map((await admin.fetchTopicOffsets(topic)).map((offset) => [offset.partition, BigInt(offset.low)]));
  /** Per partition, the offset to read up to (exclusive); a partition already there is left out. */
  const targets = new Map<number, bigint>();
  for (const position of until) {
    const target = BigInt(position.nextOffset);
    if (target > (oldest.get(position.partition) ?? 0n)) targets.set(position.partition, target);
  }
  if (targets.size === 0) return;

  const groupId = `${parts.groupIdPrefix}-scan-${randomUUID()}`;
  const consumer = parts.consumerOf(groupId);
  let finish: (error?: unknown) => void = () => {};
  const done = new Promise<void>((resolve, reject) => {
    finish = (error?: unknown) => (error === undefined ? resolve() : reject(error));
  });
  const timer = setTimeout(
    () => finish(new Error(`kafka scan of ${topic} did not reach its offsets within ${SCAN_DEADLINE_MS} ms`)),
    SCAN_DEADLINE_MS,
  );
  let failed = false;

  const eachBatch = async ({ batch, resolveOffset }: EachBatchPayload) => {
    const target = targets.get(batch.partition);
    if (failed || target === undefined) return;
    try {
      const events: PacketEvent[] = [];
      for (const message of batch.messages) {
        if (BigInt(message.offset) >= target) break;
        if (!message.value) throw new Error(`kafka record ${batch.partition}@${message.offset} has no value`);
        events.push(JSON.parse(message.value.toString('utf8')) as PacketEvent);
      }
      if (events.length > 0) await visit(events);
    } catch (error) {
      failed = true;
      finish(error);
      return;
    }
    resolveOffset(batch.lastOffset());
    if (BigInt(batch.lastOffset()) + 1n >= target) {
      targets.delete(batch.partition);
      consumer.pause([{ topic, partitions: [batch.partition] }]);
      if (targets.size === 0) finish();
    }
  };

  try {
    await consumer.connect();
    // A new group has no committed offsets: fromBeginning starts each partition at its oldest record.
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, partitionsConsumedConcurrently: 1, eachBatch });
    await done;
  } finally {
    clearTimeout(timer);
    await consumer.disconnect();
    try {
      await admin.deleteGroups([groupId]);
    } catch (error) {
      // An empty group the broker deletes on its own after offsets.retention; worth a warning, not a failed scan.
      parts.onCleanupError(error, groupId);
    }
  }
}
