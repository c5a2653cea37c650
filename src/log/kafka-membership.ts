// Which engine node owns which slot, from Kafka's consumer-group protocol: every node joins the
// group `<topic>.engines` subscribed to the event log's topic, and the group's assignment of the
// topic's partitions is the assignment of slots. Membership, failure detection (heartbeats and
// the session timeout) and reassignment are Kafka's. The consumer reads nothing: its partitions
// are paused as soon as they are assigned (the ledger has its own group that reads).
//
// Each member tells the group its NODE_ID, ADVERTISE_URL, role and the slots it holds (the
// sticky assignor keeps them where they are); every node reads all members back with
// describeGroup to route requests. That table is a hint for forwarding only: what a node may
// append is decided by the broker's fence (slot-writers.ts).
import { AssignerProtocol, Kafka, type Assigner, type Consumer, type PartitionAssigner } from 'kafkajs';
import { clientConfig, METADATA_MAX_AGE_MS, RETRY, type KafkaClientOptions, type KafkaLogLogger } from './kafka-client.js';
import { stickyAssignment, type AssignmentCandidate, type MemberRole } from './sticky-assignment.js';

/**
 * A member that sends no heartbeat for this long is out and its slots move (the broker's
 * group.min.session.timeout.ms is 6 s by default). The failover time is about this.
 */
export const ENGINE_SESSION_TIMEOUT_MS = 6_000;
const HEARTBEAT_INTERVAL_MS = 1_000;
/** How long the coordinator waits for every member to rejoin during a rebalance. */
const REBALANCE_TIMEOUT_MS = 8_000;
/** A paused consumer's fetch loop sleeps this long between heartbeats. */
const IDLE_FETCH_MS = 250;
/** How often the routing table is read again (and at once after every assignment). */
export const MEMBERS_REFRESH_MS = 1_000;
const RESTART_DELAY_MS = 1_000;
const ASSIGNOR_NAME = 'hongbao-sticky';
/** Names the short-lived member that asks for a rebalance (not a node: left out of the view). */
const NUDGER_SUFFIX = '~rebalance';
const METADATA_VERSION = 1;

export interface NodeInfo {
  readonly nodeId: string;
  readonly url: string;
  readonly role: MemberRole;
}

export interface ClusterMember extends NodeInfo {
  readonly memberId: string;
  /** Its slots in the group's current assignment, ascending. */
  readonly owns: readonly number[];
}

export interface MembershipOptions extends KafkaClientOptions {
  readonly topic: string;
  readonly slotCount: number;
  readonly self: NodeInfo;
  /** The slots this node holds now, told to the leader when it joins (stickiness). */
  readonly heldSlots: () => readonly number[];
  /** The group's assignment for this node, after every rebalance ([] once it is out of the group). */
  readonly onAssignment: (slots: readonly number[]) => void;
  readonly logger: KafkaLogLogger;
}

export function engineGroupId(topic: string): string {
  return `${topic}.engines`;
}

interface MemberData extends NodeInfo {
  readonly held: readonly number[];
}

function encodeMember(data: MemberData): Buffer {
  return Buffer.from(JSON.stringify(data), 'utf8');
}

function decodeMember(userData: Buffer | null | undefined): MemberData | undefined {
  if (!userData || userData.length === 0) return undefined;
  try {
    const data = JSON.parse(userData.toString('utf8')) as MemberData;
    return typeof data.nodeId === 'string' && typeof data.url === 'string' ? data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * describeGroup during a rebalance returns members whose metadata or assignment is empty or
 * not yet of our protocol; kafkajs's decoders throw on those. Such a member owns nothing yet.
 */
function decodeAssignment(buffer: Buffer): Record<string, number[]> | undefined {
  if (buffer.length === 0) return undefined;
  try {
    return AssignerProtocol.MemberAssignment.decode(buffer)?.assignment ?? undefined;
  } catch {
    return undefined;
  }
}

function decodeMetadata(buffer: Buffer): Buffer | undefined {
  if (buffer.length === 0) return undefined;
  try {
    return AssignerProtocol.MemberMetadata.decode(buffer)?.userData ?? undefined;
  } catch {
    return undefined;
  }
}

/** The kafkajs assigner: the leader runs `assign` over every member's metadata. */
function stickyAssigner(options: MembershipOptions): PartitionAssigner {
  return (): Assigner => ({
    name: ASSIGNOR_NAME,
    version: METADATA_VERSION,
    protocol: ({ topics }) => ({
      name: ASSIGNOR_NAME,
      metadata: AssignerProtocol.MemberMetadata.encode({
        version: METADATA_VERSION,
        topics,
        userData: encodeMember({ ...options.self, held: options.heldSlots() }),
      }),
    }),
    assign: async ({ members }) => {
      const candidates: AssignmentCandidate[] = members.map((member) => {
        const data = decodeMember(AssignerProtocol.MemberMetadata.decode(member.memberMetadata)?.userData);
        // A member without our metadata is not an engine node: it gets nothing.
        return { memberId: member.memberId, nodeId: data?.nodeId ?? member.memberId, role: data?.role ?? 'ledger', owned: data?.held ?? [] };
      });
      const assignment = stickyAssignment(candidates, options.slotCount);
      return members.map((member) => ({
        memberId: member.memberId,
        memberAssignment: AssignerProtocol.MemberAssignment.encode({
          version: METADATA_VERSION,
          assignment: { [options.topic]: assignment.get(member.memberId) ?? [] },
          userData: Buffer.alloc(0),
        }),
      }));
    },
  });
}

export class SlotMembership {
  private readonly kafka: Kafka;
  private consumer: Consumer | undefined;
  private running = false;
  private members: ClusterMember[] = [];
  private refreshTimer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  /** The member id the group gave this node last: a new one means the group dropped it meanwhile. */
  private memberId: string | undefined;
  private nudging: Promise<void> | undefined;
  private nudgeAgain = false;
  /** Rebalances this node asked for (after a slot was lost to a fence). */
  nudges = 0;
  /** Reads of the routing table that failed, since start. */
  failedRefreshes = 0;

  constructor(private readonly options: MembershipOptions) {
    this.kafka = new Kafka(clientConfig({ brokers: options.brokers, clientId: `${options.clientId}-membership` }, options.logger));
  }

  /** Joins the group; the first assignment arrives through onAssignment shortly after. */
  async start(): Promise<void> {
    this.running = true;
    await this.startConsumer();
    this.refreshTimer = setInterval(() => void this.refresh(), MEMBERS_REFRESH_MS);
    this.refreshTimer.unref();
  }

  /** The members as the group knows them, by node id. */
  view(): readonly ClusterMember[] {
    return this.members;
  }

  /** The member the group assigned this slot to, if the table knows one. */
  ownerOf(slot: number): ClusterMember | undefined {
    return this.members.find((member) => member.owns.includes(slot));
  }

  /** Reads every member and its assignment from the group coordinator. */
  refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const consumer = this.consumer;
        if (consumer === undefined) return;
        const group = await consumer.describeGroup();
        this.members = group.members
          .map((member): ClusterMember | undefined => {
            const data = decodeMember(decodeMetadata(member.memberMetadata));
            if (data === undefined) return undefined;
            const owns = [...(decodeAssignment(member.memberAssignment)?.[this.options.topic] ?? [])].sort((left, right) => left - right);
            return { memberId: member.memberId, nodeId: data.nodeId, url: data.url, role: data.role, owns };
          })
          .filter((member): member is ClusterMember => member !== undefined && !member.nodeId.endsWith(NUDGER_SUFFIX))
          .sort((left, right) => (left.nodeId < right.nodeId ? -1 : left.nodeId > right.nodeId ? 1 : 0));
      } catch (error) {
        this.failedRefreshes += 1;
        this.options.logger.warn({ err: error }, 'reading the engine group failed; routing with the last table');
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  /**
   * Makes the group assign its slots again. A node whose append was fenced lets that slot go,
   * but the assignment that named it stands until something changes the group: without a new
   * one, a slot lost to a stray or stale fence would have no owner at all. kafkajs cannot ask
   * for a rebalance, so a short-lived member that claims nothing (role ledger) joins and leaves:
   * every member rejoins with the slots it holds, the sticky assignment keeps them, and the slot
   * nobody holds now goes to one of them. One at a time; asks coming meanwhile make one more.
   */
  requestRebalance(): void {
    if (!this.running) return;
    if (this.nudging !== undefined) {
      this.nudgeAgain = true;
      return;
    }
    this.nudges += 1;
    this.nudging = this.nudge()
      .catch((error: unknown) => this.options.logger.warn({ err: error }, 'asking the engine group for a rebalance failed'))
      .finally(() => {
        this.nudging = undefined;
        if (this.nudgeAgain) {
          this.nudgeAgain = false;
          this.requestRebalance();
        }
      });
  }

  private async nudge(): Promise<void> {
    const { topic } = this.options;
    const nudger = this.kafka.consumer({
      groupId: engineGroupId(topic),
      partitionAssigners: [
        stickyAssigner({ ...this.options, self: { ...this.options.self, nodeId: `${this.options.self.nodeId}${NUDGER_SUFFIX}`, role: 'ledger' }, heldSlots: () => [] }),
      ],
      sessionTimeout: ENGINE_SESSION_TIMEOUT_MS,
      rebalanceTimeout: REBALANCE_TIMEOUT_MS,
      heartbeatInterval: HEARTBEAT_INTERVAL_MS,
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: IDLE_FETCH_MS,
      retry: { ...RETRY, restartOnFailure: async () => false },
    });
    try {
      const joined = new Promise<void>((resolve) => nudger.on(nudger.events.GROUP_JOIN, () => resolve()));
      nudger.on(nudger.events.GROUP_JOIN, () => nudger.pause([{ topic }]));
      await nudger.connect();
      await nudger.subscribe({ topics: [topic], fromBeginning: false });
      await nudger.run({ autoCommit: false, eachBatch: async () => {} });
      await Promise.race([joined, new Promise((resolve) => setTimeout(resolve, REBALANCE_TIMEOUT_MS * 2))]);
    } finally {
      await nudger.disconnect().catch(() => {});
    }
  }

  /** Leaves the group at once (the others take the slots without waiting for the session timeout). */
  async stop(): Promise<void> {
    this.running = false;
    clearInterval(this.refreshTimer);
    const consumer = this.consumer;
    this.consumer = undefined;
    await consumer?.disconnect().catch(() => {});
    this.options.onAssignment([]);
  }

  private async startConsumer(): Promise<void> {
    const { topic } = this.options;
    const consumer = this.kafka.consumer({
      groupId: engineGroupId(topic),
      partitionAssigners: [stickyAssigner(this.options)],
      sessionTimeout: ENGINE_SESSION_TIMEOUT_MS,
      rebalanceTimeout: REBALANCE_TIMEOUT_MS,
      heartbeatInterval: HEARTBEAT_INTERVAL_MS,
      metadataMaxAge: METADATA_MAX_AGE_MS,
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: IDLE_FETCH_MS,
      retry: { ...RETRY, restartOnFailure: async () => this.running },
    });
    this.consumer = consumer;
    // Emitted after the sync and before the first fetch: pause at once, so nothing is read.
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      consumer.pause([{ topic }]);
      // A new member id: the group dropped this node meanwhile (paused, cut off) and others may
      // have written its slots. Let every writer go, so each slot it gets now is taken afresh.
      if (this.memberId !== undefined && payload.memberId !== this.memberId) this.options.onAssignment([]);
      this.memberId = payload.memberId;
      this.options.onAssignment(payload.memberAssignment[topic] ?? []);
      void this.refresh();
    });
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      this.options.logger.error({ err: payload.error, restart: payload.restart }, 'engine group consumer crashed');
      if (payload.restart || !this.running) return;
      // Out of the group: the others take these slots, and the fence stops this node's appends.
      this.options.onAssignment([]);
      void (async () => {
        await consumer.disconnect().catch(() => {});
        while (this.running) {
          await new Promise((resolve) => setTimeout(resolve, RESTART_DELAY_MS));
          try {
            await this.startConsumer();
            return;
          } catch (error) {
            this.options.logger.error({ err: error }, 'engine group consumer restart failed');
          }
        }
      })();
    });
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [topic], fromBeginning: false });
      await consumer.run({ autoCommit: false, eachBatch: async () => {} });
    } catch (error) {
      await consumer.disconnect().catch(() => {});
      throw error;
    }
  }
}
