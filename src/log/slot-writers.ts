// The slots this node may write, and the one writer per slot the broker lets append.
//
// A slot is a partition of the event log. Kafka's group protocol tells this node which slots
// are its own (assign); for each it starts a fresh transactional producer whose id is derived
// from the slot, and registers it (fence): the broker bumps the id's epoch, aborts whatever
// transaction an earlier writer left open, and from then on refuses every append of an earlier
// writer. Only then does it read the slot to its end (catchUp): whatever an earlier owner
// committed before the fence is in the log by then. Group membership says who *should* own a
// slot; the epoch at the broker decides who *can* append to it (docs/decisions.md, "One owner
// per slot").
//
// Lifecycle rules (shared/research/kafka-fencing.md): a fresh producer per takeover; after any
// failed append the producer is thrown away and, if the slot is still assigned here, a new one
// fences and catches up again, since the failed commit's outcome is unknown and another node
// may have written in between. Every such change drops the slot's actors (onLost) before
// anything else can be decided on them.
import type { PacketEvent } from './events.js';

/** A transactional producer for one slot, used for one takeover only. */
export interface SlotProducer {
  /** Registers as the slot's writer: the broker bumps the epoch, fencing every earlier writer. */
  fence(): Promise<void>;
  /** One transaction with these events; resolves once committed. After a rejection the producer is dead. */
  commit(events: readonly PacketEvent[]): Promise<void>;
  /** Closes gracefully (between appends). */
  close(): Promise<void>;
  /** Cuts every connection now: nothing this producer still retries reaches the broker. */
  discard(): void;
}

export interface SlotProducerFactory {
  create(slot: number): SlotProducer;
  /** Whether an error says a newer writer holds the slot (the broker fenced this one). */
  isFenced(error: unknown): boolean;
}

export interface SlotHooks {
  /** Resolves once the ledger has applied the slot up to its end as the log holds it now. */
  catchUp(slot: number): Promise<void>;
  /** The slot's actors must go now, synchronously: their memory may be behind another writer's. */
  onLost(slot: number, reason: SlotLossReason): void;
  /** The slot is this node's to decide, from now on. */
  onTaken?(slot: number): void;
  /** A takeover attempt failed; it is retried while the slot stays assigned. */
  onTakeFailed?(slot: number, error: unknown): void;
  /** Pause before a failed takeover is tried again. */
  readonly retryDelayMs?: number;
}

export type SlotLossReason = 'unassigned' | 'fenced' | 'append_failed' | 'closed';

export type SlotState = 'owned' | 'taking' | 'not_mine';

/** An append for a slot this node does not (or no longer) own: nothing reached the log. */
export class NotSlotOwnerError extends Error {
  override readonly name = 'NotSlotOwnerError';
  constructor(readonly slot: number, reason: string) {
    super(`this node does not own slot ${slot} (${reason})`);
  }
}

interface Writer {
  readonly producer: SlotProducer;
  /** Counts takeovers of this slot by this node: a load that began under an older one is stale. */
  readonly generation: number;
  state: 'taking' | 'owned';
  /** Settles when the takeover is done (resolves) or abandoned (rejects). */
  readonly ready: Promise<void>;
}

export interface SlotStats {
  /** Appends refused by the broker because another writer holds the slot. */
  fencedAppends: number;
  /** Appends that failed for another reason (outcome unknown; the slot was taken again). */
  failedAppends: number;
  /** Takeovers completed (fence + catch-up). */
  takeovers: number;
}

const DEFAULT_RETRY_DELAY_MS = 500;

export class SlotWriters {
  private readonly writers = new Map<number, Writer>();
  /** What the group assigned to this node last. */
  private assigned = new Set<number>();
  private generations = 0;
  private closed = false;
  readonly stats: SlotStats = { fencedAppends: 0, failedAppends: 0, takeovers: 0 };

  constructor(
    private readonly factory: SlotProducerFactory,
    private readonly hooks: SlotHooks,
  ) {}

  /** The group's latest assignment for this node: slots that left are let go, new ones taken. */
  assign(slots: Iterable<number>): void {
    if (this.closed) return;
    const next = new Set(slots);
    for (const slot of this.assigned) if (!next.has(slot)) this.release(slot, 'unassigned');
    this.assigned = next;
    for (const slot of next) if (!this.writers.has(slot)) this.take(slot);
  }

  state(slot: number): SlotState {
    return this.writers.get(slot)?.state ?? 'not_mine';
  }

  /** The slots this node owns now (taken and caught up), ascending. */
  owned(): number[] {
    return [...this.writers].filter(([, writer]) => writer.state === 'owned').map(([slot]) => slot).sort((left, right) => left - right);
  }

  /** The slots the group assigned to this node, ascending (some may still be taking). */
  assignedSlots(): number[] {
    return [...this.assigned].sort((left, right) => left - right);
  }

  /**
   * Resolves with the takeover's generation once the slot is this node's and caught up; rejects
   * if it is not (or stops being) assigned here. A load from storage waits on this, and checks
   * `isCurrent(slot, generation)` after it: the slot may have been taken again meanwhile.
   */
  async ready(slot: number): Promise<number> {
    for (;;) {
      const writer = this.writers.get(slot);
      if (writer === undefined) throw new NotSlotOwnerError(slot, 'not assigned here');
      try {
        await writer.ready;
      } catch {
        continue; // that takeover was abandoned; a newer one may be under way
      }
      if (this.writers.get(slot) === writer) return writer.generation;
    }
  }

  isCurrent(slot: number, generation: number): boolean {
    const writer = this.writers.get(slot);
    return writer !== undefined && writer.state === 'owned' && writer.generation === generation;
  }

  /**
   * Appends the events (all of this slot) in one transaction. Appends of one slot must come one
   * at a time (one group committer per slot). A rejection's outcome is unknown, and the slot's
   * actors are already gone when it arrives.
   */
  async append(slot: number, events: readonly PacketEvent[]): Promise<void> {
    const writer = this.writers.get(slot);
    if (writer === undefined || writer.state !== 'owned') throw new NotSlotOwnerError(slot, writer === undefined ? 'not assigned here' : 'still taking it over');
    try {
      await writer.producer.commit(events);
    } catch (error) {
      if (this.writers.get(slot) === writer) {
        const fenced = this.factory.isFenced(error);
        if (fenced) this.stats.fencedAppends += 1;
        else this.stats.failedAppends += 1;
        // Fenced: a newer writer holds the slot; it stays another node's until the group
        // assigns it here again. Otherwise the commit's outcome is unknown: take it afresh.
        this.release(slot, fenced ? 'fenced' : 'append_failed');
        if (fenced) this.assigned.delete(slot);
        else if (this.assigned.has(slot)) this.take(slot);
      }
      throw error;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const producers = [...this.writers.keys()].map((slot) => this.release(slot, 'closed'));
    this.assigned.clear();
    await Promise.all(producers.map((producer) => producer?.close().catch(() => producer.discard())));
  }

  private take(slot: number): void {
    const producer = this.factory.create(slot);
    let settle: { resolve: () => void; reject: (error: unknown) => void } = { resolve: () => {}, reject: () => {} };
    const ready = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    ready.catch(() => {});
    const writer: Writer = { producer, generation: (this.generations += 1), state: 'taking', ready };
    this.writers.set(slot, writer);
    void (async () => {
      try {
        await producer.fence();
        if (this.writers.get(slot) !== writer) throw new NotSlotOwnerError(slot, 'let go during the takeover');
        await this.hooks.catchUp(slot);
        if (this.writers.get(slot) !== writer) throw new NotSlotOwnerError(slot, 'let go during the takeover');
        writer.state = 'owned';
        this.stats.takeovers += 1;
        this.hooks.onTaken?.(slot);
        settle.resolve();
      } catch (error) {
        settle.reject(error);
        if (this.writers.get(slot) !== writer) return; // let go meanwhile: release() handled it
        this.writers.delete(slot);
        producer.discard();
        this.hooks.onTakeFailed?.(slot, error);
        setTimeout(() => {
          if (!this.closed && this.assigned.has(slot) && !this.writers.has(slot)) this.take(slot);
        }, this.hooks.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS).unref();
      }
    })();
  }

  /** Forgets the slot's writer and drops its actors, synchronously; returns the producer to close. */
  private release(slot: number, reason: SlotLossReason): SlotProducer | undefined {
    const writer = this.writers.get(slot);
    if (writer === undefined) return undefined;
    this.writers.delete(slot);
    this.hooks.onLost(slot, reason);
    if ((reason === 'unassigned' || reason === 'closed') && writer.state === 'owned') {
      // Between appends a graceful close is enough; the next owner's fence stops anything late.
      if (reason === 'unassigned') void writer.producer.close().catch(() => writer.producer.discard());
      return writer.producer;
    }
    // A takeover still under way is cut: a fence request it is still retrying must not reach
    // the broker after the slot went to another node (it would fence that node).
    writer.producer.discard();
    return undefined;
  }
}
