// The engine: routes each packet to its actor (one per packet, activated on first use,
// evicted when idle), and sheds load at fixed bounds instead of queueing without end.
import { UnavailableError } from '../domain/errors.js';
import type { Limits } from '../domain/limits.js';
import type { Seed } from '../domain/random.js';
import type { PacketEvent } from '../log/events.js';
import type { Clock } from './clock.js';
import { answerFromCache, type PacketCache } from './packet-cache.js';
import type { Claim, Packet, StoredPacket } from '../domain/packet.js';
import { BUSY, type Busy, type GrabOutcome, type OpenOutcome } from '../domain/grab-open.js';
import type { PaymentSignal } from '../domain/payment.js';
import { PacketActor, type ActorDependencies, type PacketSnapshot, type PaymentAnswer } from './packet-actor.js';

/**
 * Opens waiting in this process (all packets): for an activation or the cache, for their own
 * write, or for another open's write to be durable. Past it, an open that would wait answers
 * busy at once; an open whose answer is already final is still answered.
 */
export const OPENS_IN_FLIGHT_MAX = 20_000;
/** Packets being loaded from storage at once; past it, requests for cold packets answer busy. */
export const ACTIVATIONS_IN_FLIGHT_MAX = 2_000;
/** Lookups by one request whose actor keeps being dropped under it; past it, busy. */
const ACTOR_LOOKUPS_MAX = 3;

/** Where actors come from. `load` must wait until storage has every durable event of the packet. */
export interface PacketSource {
  load(packetId: string): Promise<StoredPacket | null>;
}

export interface EngineOptions {
  readonly limits: Limits;
  readonly clock: Clock;
  readonly seedFor: (packetId: string) => Seed;
  readonly source: PacketSource;
  readonly commit: (event: PacketEvent, onFailure: () => void) => Promise<void>;
  readonly onClaimDecided?: (claim: Claim) => void;
  /** Answers for packets that are done, without activating their actor (Redis in services mode). */
  readonly cache?: PacketCache;
  readonly onClaimFailed?: (claim: Claim) => void;
  /**
   * False for an id that no packet can have (its tag does not verify): such a request is not
   * found before any cache read or activation. Asked only on the cold path, where that work
   * would begin: a packet with a live actor here was issued, and the hot path pays nothing.
   */
  readonly mayExist?: (packetId: string) => boolean;
}

export type EngineOpenOutcome = OpenOutcome | { state: 'not_found' };
export type EngineGrabOutcome = GrabOutcome | { state: 'not_found' } | Busy;

interface Slot {
  actor: PacketActor | undefined;
  activation: Promise<PacketActor | null> | undefined;
}

const NOT_FOUND = { state: 'not_found' } as const;

export class Engine {
  /**
   * Every local actor, by packet id: one process owns every packet it is asked about, so a
   * lookup on the hot path is a single map read. (Across processes the owner of a packet will
   * be decided by Kafka's group protocol over the log's partitions: docs/decisions.md.)
   */
  private readonly slots = new Map<string, Slot>();
  /** Every waiting open of the process (OPENS_IN_FLIGHT_MAX), shared with the actors. */
  private readonly waiting = { count: 0, max: OPENS_IN_FLIGHT_MAX };
  private activationsInFlight = 0;

  /** One dependencies object shared by every actor: an idle actor carries no closures of its own. */
  private readonly dependencies: ActorDependencies;

  constructor(private readonly options: EngineOptions) {
    const { cache, onClaimDecided, onClaimFailed } = options;
    this.dependencies = {
      limits: options.limits,
      seedFor: options.seedFor,
      commit: options.commit,
      processWaiting: this.waiting,
      ...(onClaimDecided ? { onClaimDecided } : {}),
      ...(onClaimFailed ? { onClaimFailed } : {}),
      ...(cache
        ? {
            onClaimDurable: (packet: Packet, claim: Claim, finished: boolean) => cache.rememberClaim(packet, claim, finished),
            onExpiredDurable: (packet: Packet) => cache.rememberExpired(packet),
          }
        : {}),
    };
  }

  open(packetId: string, userId: string): Promise<EngineOpenOutcome> {
    // Hot path: the actor is here. Looking it up and using it in one synchronous step keeps
    // "one actor per packet" (nothing can evict it in between), and a final answer costs no await.
    const actor = this.slots.get(packetId)?.actor;
    if (actor !== undefined && !actor.poisoned) {
      // The actor itself sheds what would wait past its own or the process's bound.
      const outcome = actor.open(userId, this.options.clock.now());
      return outcome instanceof Promise ? outcome : Promise.resolve(outcome);
    }
    if (this.waiting.count >= OPENS_IN_FLIGHT_MAX) return Promise.resolve(BUSY);
    return this.openCold(packetId, userId);
  }

  /** A packet without a local actor: the cache may answer; otherwise activate and decide. */
  private async openCold(packetId: string, userId: string): Promise<EngineOpenOutcome> {
    if (this.options.mayExist?.(packetId) === false) return NOT_FOUND;
    // Counted while it waits for the cache or the activation; at the actor it is counted there.
    let counted = true;
    const uncount = () => {
      if (counted) this.waiting.count -= 1;
      counted = false;
    };
    this.waiting.count += 1;
    try {
      const cached = await this.fromCache(packetId, userId);
      if (cached !== undefined) return cached.state === 'claimed' ? { ...cached, state: 'already_claimed' } : cached;
      const outcome = await this.withActor(packetId, (actor) => {
        uncount();
        return actor.open(userId, this.options.clock.now());
      });
      if (outcome === 'busy') return BUSY;
      if (outcome === null) return { state: 'not_found' };
      return outcome;
    } finally {
      uncount();
    }
  }

  /** 抢: answered from memory (after a one-time activation); never enters the decision path. */
  grab(packetId: string, userId: string): Promise<EngineGrabOutcome> {
    const actor = this.slots.get(packetId)?.actor;
    if (actor !== undefined && !actor.poisoned) return Promise.resolve(actor.grab(userId, this.options.clock.now()));
    return this.grabCold(packetId, userId);
  }

  private async grabCold(packetId: string, userId: string): Promise<EngineGrabOutcome> {
    if (this.options.mayExist?.(packetId) === false) return NOT_FOUND;
    const cached = await this.fromCache(packetId, userId);
    if (cached !== undefined) return cached.state === 'claimed' ? { state: 'claimed', amountFen: cached.amountFen } : cached;
    const outcome = await this.withActor(packetId, (actor) => actor.grab(userId, this.options.clock.now()));
    if (outcome === 'busy') return BUSY;
    if (outcome === null) return { state: 'not_found' };
    return outcome;
  }

  /** The durable state of a packet, for the result page. */
  async view(packetId: string): Promise<PacketSnapshot | null | 'busy'> {
    if (this.slots.get(packetId) === undefined && this.options.mayExist?.(packetId) === false) return null;
    return this.withActor(packetId, (actor) => actor.snapshot());
  }

  /** Closes a packet whose deadline passed; a no-op for a packet that is closed or not yet due. */
  async expire(packetId: string): Promise<void> {
    await this.withActor(packetId, (actor) => actor.expire(this.options.clock.now()));
  }

  /** A signal about a provider-paid packet's payment, decided by its actor; resolves once durable. */
  async settlePayment(packetId: string, signal: PaymentSignal): Promise<PaymentAnswer | null | 'busy'> {
    if (this.slots.get(packetId) === undefined && this.options.mayExist?.(packetId) === false) return null;
    return this.withActor(packetId, (actor) => actor.settlePayment(signal, this.options.clock.now()));
  }

  /** A packet just created (and stored): start its actor without a read. */
  adopt(stored: StoredPacket): void {
    if (this.slots.has(stored.packet.id)) return;
    this.slots.set(stored.packet.id, { actor: this.build(stored), activation: undefined });
  }

  /**
   * Drops every actor (and forgets every activation) whose packet matches, now: their memory may
   * be behind another node's decisions. Writes they have in flight still settle; their packets
   * come back from storage on the next request. Returns how many actors went.
   */
  dropWhere(matches: (packetId: string) => boolean): number {
    let dropped = 0;
    for (const [packetId, slot] of this.slots) {
      if (!matches(packetId)) continue;
      this.slots.delete(packetId);
      if (slot.actor !== undefined) dropped += 1;
    }
    return dropped;
  }

  /** Drops actors with nothing in flight that were not used for idleMs. Returns how many. */
  evictIdle(idleMs: number): number {
    const nowMs = this.options.clock.now();
    let evicted = 0;
    for (const [packetId, slot] of this.slots) {
      const actor = slot.actor;
      if (actor !== undefined && actor.pendingWrites === 0 && nowMs - actor.lastUsedMs >= idleMs) {
        this.slots.delete(packetId);
        evicted += 1;
      }
    }
    return evicted;
  }

  get stats() {
    const actors = this.slots.size;
    return { actors, opensInFlight: this.waiting.count, activationsInFlight: this.activationsInFlight };
  }

  /** Only for packets without a local actor: a local actor's memory is fresher than any cache. */
  private async fromCache(packetId: string, userId: string) {
    const cache = this.options.cache;
    if (cache === undefined || this.slots.get(packetId)?.actor !== undefined) return undefined;
    const entry = await cache.peek(packetId, userId);
    return entry === null ? undefined : answerFromCache(entry, userId);
  }

  private build(stored: StoredPacket): PacketActor {
    const actor = new PacketActor(stored, this.dependencies, this.options.clock.now());
    // The cache holds final facts only: a packet whose payment is not settled (or failed, its
    // claims void) is answered by its actor alone.
    const settled = stored.payment === undefined || stored.payment.phase === 'funded';
    if (settled) this.options.cache?.rememberPacket(stored.packet, actor.status, stored.claims);
    return actor;
  }

  /**
   * Runs `use` on the packet's current actor, in the same synchronous step as the check that it
   * still is the current one. The lookup awaits, and an eviction (or a rebuild after a failed
   * write) can run in the same microtask drain before the caller resumes: deciding on a dropped
   * actor would put two actors — and two claims with one seq, or two refunds — on one packet.
   */
  private async withActor<Result>(packetId: string, use: (actor: PacketActor) => Result): Promise<Awaited<Result> | null | 'busy'> {
    for (let attempt = 0; attempt < ACTOR_LOOKUPS_MAX; attempt += 1) {
      const actor = await this.actorFor(packetId);
      if (actor === 'busy' || actor === null) return actor;
      if (this.slots.get(packetId)?.actor === actor) return await use(actor);
    }
    return 'busy';
  }

  private async actorFor(packetId: string): Promise<PacketActor | null | 'busy'> {
    const slot = this.slots.get(packetId);
    if (slot?.actor !== undefined) {
      // A poisoned actor may be ahead of the log: forget it and rebuild from storage.
      if (!slot.actor.poisoned) return slot.actor;
      if (slot.actor.pendingWrites > 0) throw new UnavailableError('this packet is recovering from a failed write; try again');
      this.slots.delete(packetId);
    } else if (slot?.activation !== undefined) {
      return slot.activation;
    }
    if (this.activationsInFlight >= ACTIVATIONS_IN_FLIGHT_MAX) return 'busy';

    const fresh: Slot = { actor: undefined, activation: undefined };
    this.activationsInFlight += 1;
    fresh.activation = this.options.source
      .load(packetId)
      .then((stored) => {
        if (this.slots.get(packetId) !== fresh) {
          // Dropped while it loaded (its slot changed hands): what was read may be stale.
          const current = this.slots.get(packetId)?.actor;
          if (current !== undefined) return current;
          throw new UnavailableError('this packet changed hands while it was loaded; try again');
        }
        if (stored === null) {
          this.slots.delete(packetId);
          return null;
        }
        fresh.actor = this.build(stored);
        fresh.activation = undefined;
        return fresh.actor;
      })
      .catch((cause: unknown) => {
        if (this.slots.get(packetId) === fresh) this.slots.delete(packetId);
        if (cause instanceof UnavailableError) throw cause;
        throw new UnavailableError('could not load the packet from storage', { cause });
      })
      .finally(() => {
        this.activationsInFlight -= 1;
      });
    this.slots.set(packetId, fresh);
    return fresh.activation;
  }
}
