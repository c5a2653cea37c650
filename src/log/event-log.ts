// The seam between the engine (which appends) and the ledger (which consumes).
// Two durable implementations (table, kafka) and one in-memory one for unit tests.
import type { PacketEvent } from './events.js';

/** A partition's next offset to read. Offsets are decimal strings: Kafka's are 64-bit. */
export interface LogPosition {
  readonly partition: number;
  readonly nextOffset: string;
}

export interface LogBatch {
  /**
   * May be empty: records that are not events (Kafka's transaction markers, the records of an
   * aborted transaction) still take offsets, and the reader must move past them.
   */
  readonly events: readonly PacketEvent[];
  /** Where the reader stands after this batch, per partition it touched. */
  readonly positions: readonly LogPosition[];
}

/**
 * Where a reader starts: fixed positions, or a function that reads them (the ledger's stored
 * positions) which the log calls each time it starts reading partitions: at start, and on
 * Kafka every time the group hands this reader partitions (another reader may have moved them
 * since). Partitions not listed start at 0.
 */
export type StartPositions = readonly LogPosition[] | (() => Promise<readonly LogPosition[]>);

export const readStartPositions = async (from: StartPositions): Promise<readonly LogPosition[]> =>
  typeof from === 'function' ? from() : from;

export interface Subscription {
  stop(): Promise<void>;
}

export interface EventLog {
  /** Which log this is, for stored positions and the start line. */
  readonly name: string;
  /** Resolves once every event is durable; the order of one packet's events is kept. */
  append(events: readonly PacketEvent[]): Promise<void>;
  /**
   * Delivers batches in order from the start positions. The next batch of a partition comes
   * only after the handler's promise resolved; a rejected handler gets the same events again.
   * A partition never starts behind what this subscription's handler already accepted.
   */
  subscribe(from: StartPositions, handler: (batch: LogBatch) => Promise<void>): Promise<Subscription>;
  /** The end of the packet's partition now: once the ledger reached it, storage knows every claim of the packet. */
  headFor(packetId: string): Promise<LogPosition>;
  /** The end of every partition now: once the ledger reached them all, it has applied every durable event. */
  heads(): Promise<LogPosition[]>;
  /**
   * Reads the log's history: every partition from its start up to `until` (exclusive), in
   * order per partition, in bounded batches; a partition not listed is not read. The next
   * batch comes after `visit` resolved. For audits (reconciliation), not the hot path.
   * A log with retention (Kafka) starts each partition at the oldest record it still holds.
   */
  scan(until: readonly LogPosition[], visit: (events: readonly PacketEvent[]) => Promise<void> | void): Promise<void>;
  close(): Promise<void>;
}

export const compareOffsets = (left: string, right: string) => {
  const difference = BigInt(left) - BigInt(right);
  return difference < 0n ? -1 : difference > 0n ? 1 : 0;
};
