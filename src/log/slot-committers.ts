// Group commit per slot: one committer (one transaction in flight) per log partition, so a
// slot's events keep their decision order and one slot's fence or failure never fails another's.
import { BATCH_EVENTS_MAX, GroupCommitter, type CommitStats, type Committer } from './group-commit.js';
import type { PacketEvent } from './events.js';
import type { SlotWriters } from './slot-writers.js';

/**
 * The pause between one transaction of a slot and the next (GroupCommitter's pauseAfterAppendMs):
 * the coordinator writes the commit markers after it answers, and kafkajs asks it for the
 * coordinator and adds the partition to the next transaction before anything is sent, so a
 * transaction begun at once is refused (CONCURRENT_TRANSACTIONS) and retried after 10 ms.
 * Waiting here instead gathers that time's opens into the same transaction.
 */
export const SLOT_COMMIT_PAUSE_MS = 40;

export class SlotCommitters implements Committer {
  private readonly bySlot = new Map<number, GroupCommitter>();

  constructor(
    private readonly slotOf: (packetId: string) => number,
    private readonly writers: SlotWriters,
    private readonly logName: string,
  ) {}

  submit(event: PacketEvent, onFailure?: () => void): Promise<void> {
    const slot = this.slotOf(event.packetId);
    let committer = this.bySlot.get(slot);
    if (committer === undefined) {
      committer = new GroupCommitter({ name: this.logName, append: (events) => this.writers.append(slot, events) }, BATCH_EVENTS_MAX, SLOT_COMMIT_PAUSE_MS);
      this.bySlot.set(slot, committer);
    }
    return committer.submit(event, onFailure);
  }

  get stats(): CommitStats {
    const total = { appends: 0, events: 0 };
    for (const committer of this.bySlot.values()) {
      total.appends += committer.stats.appends;
      total.events += committer.stats.events;
    }
    return total;
  }
}
