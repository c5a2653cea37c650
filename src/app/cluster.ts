// A node of the cluster (services mode: the Kafka log): which slots it owns (Kafka's group
// protocol), the fenced writer of each (slot-writers.ts), group commit per slot, and where every
// packet is decided (here, forwarded to its owner, or busy during a handover).
import type { Logger } from 'pino';
import { UnavailableError } from '../domain/errors.js';
import type { Engine } from '../engine/engine.js';
import type { ConsumerPort } from '../ledger/ledger-consumer.js';
import type { KafkaLog } from '../log/kafka-log.js';
import { SlotMembership, type NodeInfo } from '../log/kafka-membership.js';
import { kafkaSlotProducers } from '../log/kafka-slot-producer.js';
import { SlotCommitters } from '../log/slot-committers.js';
import { SlotWriters } from '../log/slot-writers.js';
import { BUSY_RETRY_AFTER_MS } from '../domain/grab-open.js';
import type { Placement } from './hongbao-service.js';
import type { ClusterView, PacketRoute } from './service.js';

/** How long a takeover may wait for the ledger to apply the slot to its end. */
export const TAKEOVER_CATCH_UP_TIMEOUT_MS = 5 * 60_000;
/** How long a starting node waits for its first slots before it serves (busy for those not yet taken). */
export const START_SETTLE_MS = 30_000;

const HERE: PacketRoute = Object.freeze({ kind: 'here' });
/** A handover is under way, or the owner is not known yet: the caller retries shortly. */
const HANDOVER: PacketRoute = Object.freeze({ kind: 'busy', retryAfterMs: BUSY_RETRY_AFTER_MS });

export interface ClusterNodeOptions {
  readonly log: KafkaLog;
  readonly self: NodeInfo;
  readonly clientId: string;
  readonly consumer: ConsumerPort;
  /** The engine is built after the node (it commits through it): looked up when a slot is lost. */
  readonly engine: () => Engine | undefined;
  readonly logger: Logger;
}

export class ClusterNode {
  readonly slots: SlotWriters;
  readonly committer: SlotCommitters;
  readonly membership: SlotMembership;
  readonly placement: Placement;
  /** Assignments received from the group since start. */
  private assignments = 0;

  constructor(private readonly options: ClusterNodeOptions) {
    const { log, logger, self } = options;
    const slotOf = (packetId: string) => log.partitionOf(packetId);
    const onCommitted = (slot: number, nextOffset: string) => log.noteCommitted(slot, nextOffset);
    this.slots = new SlotWriters(kafkaSlotProducers({ brokers: log.brokers, clientId: options.clientId, topic: log.topic, logger, onCommitted }), {
      catchUp: async (slot) => {
        // After the fence: whatever an earlier owner committed is below this head by now.
        const head = (await log.heads()).find((position) => position.partition === slot);
        if (head === undefined) throw new Error(`the topic has no partition ${slot}`);
        await options.consumer.waitApplied(head, TAKEOVER_CATCH_UP_TIMEOUT_MS);
      },
      onLost: (slot, reason) => {
        const dropped = options.engine()?.dropWhere((packetId) => slotOf(packetId) === slot) ?? 0;
        if (reason !== 'closed') logger.warn({ slot, reason, droppedActors: dropped }, `slot lost: ${slot} (${reason}); nothing more is acknowledged for it here`);
        // The assignment that named this node stands; ask for a new one so the slot gets an owner.
        if (reason === 'fenced') this.membership.requestRebalance();
      },
      onTaken: (slot) => logger.info({ slot }, `slot taken: ${slot}`),
      onTakeFailed: (slot, error) => logger.warn({ err: error, slot }, `taking slot ${slot} failed; retrying while it stays assigned here`),
    });
    this.committer = new SlotCommitters(slotOf, this.slots, log.name);
    this.membership = new SlotMembership({
      brokers: log.brokers,
      clientId: options.clientId,
      topic: log.topic,
      slotCount: log.partitionCount,
      self,
      heldSlots: () => this.slots.assignedSlots(),
      onAssignment: (slots) => {
        if (self.role === 'ledger') return;
        this.assignments += 1;
        logger.info({ slots }, 'engine group assignment');
        this.slots.assign(slots);
      },
      logger,
    });
    const slots = this.slots;
    const membership = this.membership;
    this.placement = {
      nodeId: self.nodeId,
      route(packetId: string): PacketRoute {
        const slot = slotOf(packetId);
        const state = slots.state(slot);
        if (state === 'owned') return HERE;
        if (state === 'taking') return HANDOVER;
        const owner = membership.ownerOf(slot);
        // The table may still name this node for a slot it just lost: busy until it knows better.
        if (owner === undefined || (owner.nodeId === self.nodeId && owner.url === self.url)) return HANDOVER;
        return { kind: 'forward', nodeId: owner.nodeId, url: owner.url };
      },
      async view(): Promise<ClusterView> {
        await membership.refresh();
        const nodes = membership.view().map((member) => ({ id: member.nodeId, url: member.url, role: member.role, owns: member.owns }));
        return { self: self.nodeId, nodes };
      },
    };
  }

  /** Before a packet is loaded from storage: its slot must be this node's and caught up. */
  async beforeLoad(packetId: string): Promise<number> {
    try {
      return await this.slots.ready(this.options.log.partitionOf(packetId));
    } catch (cause) {
      throw new UnavailableError('this packet is changing hands between nodes; try again', { cause });
    }
  }

  /** After the load: if the slot was taken afresh meanwhile, what was read may be stale. */
  afterLoad(packetId: string, generation: number): void {
    if (!this.slots.isCurrent(this.options.log.partitionOf(packetId), generation)) {
      throw new UnavailableError('this packet changed hands while it was loaded; try again');
    }
  }

  /** Whether this node decides the packet now (expiry runs only for those). */
  decidesHere(packetId: string): boolean {
    return this.slots.state(this.options.log.partitionOf(packetId)) === 'owned';
  }

  /**
   * Joins the group, then waits (at most `settleMs`) until the first assignment has come and
   * every slot of it is taken, so a node that starts serves its own slots at once. Past the
   * wait it serves anyway: a slot still being taken answers busy until it is.
   */
  async start(settleMs = START_SETTLE_MS): Promise<void> {
    await this.membership.start();
    if (this.options.self.role === 'ledger') return;
    const deadline = Date.now() + settleMs;
    while (Date.now() < deadline) {
      const assigned = this.slots.assignedSlots();
      if (this.assignments > 0 && assigned.every((slot) => this.slots.state(slot) === 'owned')) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    this.options.logger.warn({ assigned: this.slots.assignedSlots(), owned: this.slots.owned() }, 'serving before every assigned slot was taken; those answer busy until they are');
  }

  /** Leaves the group (the others take the slots at once), then closes the writers. */
  async stop(): Promise<void> {
    await this.membership.stop();
    await this.slots.close();
  }
}
