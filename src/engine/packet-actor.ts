// One actor per live packet: every state change of the packet is decided here, synchronously,
// in memory, so opens and expiry are serialized without locks. A decision becomes an event;
// the opener hears "claimed" only once that event is durable.
import { nextShare } from '../domain/allocation.js';
import { invariant, UnavailableError } from '../domain/errors.js';
import type { Limits } from '../domain/limits.js';
import { statusOf } from '../domain/outcome.js';
import { mayOpen, type Claim, type Packet, type PacketStatus, type StoredPacket } from '../domain/packet.js';
import { decidePayment, isOpenable, phaseAfter, type PaymentChange, type PaymentPhase, type PaymentSignal } from '../domain/payment.js';
import type { Seed } from '../domain/random.js';
import type { Fen } from '../money/money.js';
import { BUSY, type GrabOutcome, type OpenOutcome } from '../domain/grab-open.js';
import type { PacketEvent, PaymentEvent } from '../log/events.js';

/**
 * What may queue on one packet: its writes in flight (claims, expiry) plus the opens that wait
 * for one of them to be durable (a racing "already claimed", a "sold out" behind the last
 * shares). Past it an open that would wait answers busy at once; final answers never wait.
 */
export const PACKET_WAITING_MAX = 1024;

const NOT_ELIGIBLE: OpenOutcome = Object.freeze({ state: 'not_eligible' });
const SOLD_OUT: OpenOutcome = Object.freeze({ state: 'sold_out' });
const EXPIRED: OpenOutcome = Object.freeze({ state: 'expired' });
const PENDING_PAYMENT: OpenOutcome = Object.freeze({ state: 'pending_payment' });
const CANCELLED: OpenOutcome = Object.freeze({ state: 'cancelled' });

/** What a payment signal did, once durable: the change (or none) and the phase after it. */
export interface PaymentAnswer {
  readonly change: PaymentChange;
  readonly phase: PaymentPhase;
}

export interface PacketSnapshot {
  readonly packet: Packet;
  readonly status: PacketStatus;
  /** Durable claims only, in seq order. */
  readonly claims: readonly Claim[];
  /** The payment's durable phase (`funded` for a packet paid from the balance). */
  readonly phase: PaymentPhase;
}

interface ClaimRecord {
  readonly claim: Claim;
  durable: boolean;
  /** Resolves with the decider's answer once the claim is durable; rejects if its write failed. */
  readonly settled: Promise<OpenOutcome>;
}

export interface ActorDependencies {
  readonly limits: Limits;
  /** The packet's seed, computed on its first claim (an idle packet keeps none in memory). */
  readonly seedFor: (packetId: string) => Seed;
  /**
   * Makes an event durable (group-committed). Rejects if the log did not take it; before that,
   * calls onFailure synchronously, so no further decision can slip in on top of a lost event.
   */
  readonly commit: (event: PacketEvent, onFailure: () => void) => Promise<void>;
  readonly onClaimDecided?: (claim: Claim) => void;
  /**
   * Shared by every actor of the process (and the engine's cold opens): what waits in this
   * process, counted as in PACKET_WAITING_MAX. At `max` an open that would wait answers busy.
   */
  readonly processWaiting?: { count: number; readonly max: number };
  readonly onClaimFailed?: (claim: Claim) => void;
  /**
   * A claim became durable and final; `finished` when it was the packet's last share. Not for a
   * held claim: its packet's payment may still fail, and then the claim is void.
   */
  readonly onClaimDurable?: (packet: Packet, claim: Claim, finished: boolean) => void;
  readonly onExpiredDurable?: (packet: Packet) => void;
}

export class PacketActor {
  /** Replaced (never mutated) when a provider-paid packet first becomes openable: its lifetime starts then. */
  packet: Packet;
  /** The packet as durable: what the result page shows. */
  private packetDurable: Packet;
  /** The payment as decided, and as durable. */
  private phase: PaymentPhase;
  private phaseDurable: PaymentPhase;
  private lateCredited: boolean;
  /** The last payment write: a repeated signal is answered once the change it repeats is durable. */
  private paymentWrite: Promise<void> = Promise.resolve();
  private remainingFen: Fen;
  private readonly claimsInOrder: ClaimRecord[] = [];
  /** Created with the first claim: most live packets in memory are idle, and an empty Map is not free. */
  private claimsByUser: Map<string, ClaimRecord> | undefined;
  private seed: Seed | undefined;
  private claimedFen: Fen = 0;
  /** Decided: no open is decided after this. */
  private expired: boolean;
  /** Durable: the expire event is in the log. */
  private expiredDurable: boolean;
  private expiring: Promise<void> | undefined;
  /** Decisions whose event is not yet durable. */
  private inFlight = 0;
  /** Opens waiting for one of those decisions to be durable. */
  private waiters = 0;
  /** A write failed: this actor's memory may be ahead of the log. The engine drops it and rebuilds. */
  poisoned = false;
  lastUsedMs: number;

  constructor(stored: StoredPacket, private readonly dependencies: ActorDependencies, nowMs: number) {
    this.packet = stored.packet;
    this.packetDurable = stored.packet;
    this.phase = stored.payment?.phase ?? 'funded';
    this.phaseDurable = this.phase;
    this.lateCredited = stored.payment?.lateCredited ?? false;
    this.expired = stored.expired;
    this.expiredDurable = stored.expired;
    this.remainingFen = stored.packet.totalFen;
    for (const claim of stored.claims) {
      invariant(claim.seq === this.claimsInOrder.length + 1, `packet ${claim.packetId}: claims are not a prefix (seq ${claim.seq})`);
      const record: ClaimRecord = { claim, durable: true, settled: Promise.resolve({ state: 'claimed', amountFen: claim.amountFen, seq: claim.seq }) };
      this.claimsInOrder.push(record);
      (this.claimsByUser ??= new Map()).set(claim.userId, record);
      this.remainingFen -= claim.amountFen;
      this.claimedFen += claim.amountFen;
    }
    this.lastUsedMs = nowMs;
    this.checkInvariants();
  }

  get claimedCount(): number {
    return this.claimsInOrder.length;
  }

  get remaining(): Fen {
    return this.remainingFen;
  }

  get pendingWrites(): number {
    return this.inFlight;
  }

  /** Writes in flight and the opens waiting on them: what PACKET_WAITING_MAX bounds. */
  get waiting(): number {
    return this.inFlight + this.waiters;
  }

  get status(): PacketStatus {
    return statusOf(this.packet, this.claimsInOrder.length, this.expired, this.phase);
  }

  /** 抢: a cheap read from memory; changes nothing. */
  grab(userId: string, nowMs: number): GrabOutcome {
    if (!mayOpen(this.packet, userId)) return { state: 'not_eligible' };
    if (this.phase === 'cancelled') return { state: 'cancelled' };
    if (this.phase === 'pending_payment') return { state: 'pending_payment' };
    const mine = this.claimsByUser?.get(userId);
    if (mine !== undefined) return { state: 'claimed', amountFen: mine.claim.amountFen };
    const status = this.status;
    if (status === 'finished' || this.claimsInOrder.length >= this.packet.count) return { state: 'sold_out' };
    if (status === 'expired' || nowMs >= this.packet.expiresAtMs) return { state: 'expired' };
    return { state: 'openable' };
  }

  /**
   * 拆: claims a share, or says why not. A claim is answered only once it is durable. The
   * answer is returned synchronously when it is already final (most of a crowd: sold out,
   * already claimed and written): no promise per rejected open on the hot path.
   */
  open(userId: string, nowMs: number): OpenOutcome | Promise<OpenOutcome> {
    this.lastUsedMs = nowMs;
    if (!mayOpen(this.packet, userId)) return NOT_ELIGIBLE;
    // Not openable: nothing to claim before the payment is returned, nothing after it failed.
    if (!isOpenable(this.phase)) {
      if (this.phase !== 'cancelled') return PENDING_PAYMENT;
      // "Cancelled" is final, so it must be true: if the cancellation's write fails, the packet
      // is not cancelled (it is rebuilt awaiting its funds, and may yet be funded).
      if (this.phaseDurable === 'cancelled') return CANCELLED;
      return this.full() ? BUSY : this.waitFor(this.paymentWrite.then(() => CANCELLED), CANCELLED);
    }
    const mine = this.claimsByUser?.get(userId);
    if (mine !== undefined) {
      // A racing second open waits for the first one's write: "already claimed" must be true.
      const outcome: OpenOutcome = { state: 'already_claimed', amountFen: mine.claim.amountFen, seq: mine.claim.seq };
      if (mine.durable) return outcome;
      return this.full() ? BUSY : this.waitFor(mine.settled, outcome);
    }
    const status = this.status;
    if (status === 'finished' || (status === 'awaiting_funds' && this.claimsInOrder.length >= this.packet.count)) {
      // "Sold out" must be true too: the last shares may still be in flight, and if their write
      // fails they are free again. Durable claims are a prefix, so the last one settles it; if it
      // fails, this open fails with it (503) rather than turn the user away from a live packet.
      const last = this.claimsInOrder[this.claimsInOrder.length - 1]!;
      if (last.durable) return SOLD_OUT;
      return this.full() ? BUSY : this.waitFor(last.settled, SOLD_OUT);
    }
    if (status === 'expired') return EXPIRED;
    if (nowMs >= this.packet.expiresAtMs) return this.expire(nowMs).then(() => EXPIRED);
    if (this.full()) return BUSY;
    if (this.poisoned) return Promise.reject(new UnavailableError('this packet is recovering from a failed write; try again'));

    // The decider's answer is the record's own promise: no further allocation per claim.
    return this.decideClaim(userId, nowMs).settled;
  }

  /** Whether one more waiting open would pass the packet's or the process's bound. */
  private full(): boolean {
    const processWaiting = this.dependencies.processWaiting;
    return this.inFlight + this.waiters >= PACKET_WAITING_MAX || (processWaiting !== undefined && processWaiting.count >= processWaiting.max);
  }

  /** An answer that is true once `settled` is durable; counted while it waits, failed with it. */
  private waitFor(settled: Promise<OpenOutcome>, outcome: OpenOutcome): Promise<OpenOutcome> {
    const processWaiting = this.dependencies.processWaiting;
    this.waiters += 1;
    if (processWaiting) processWaiting.count += 1;
    return settled.then(
      () => {
        this.waiters -= 1;
        if (processWaiting) processWaiting.count -= 1;
        return outcome;
      },
      (error: unknown) => {
        this.waiters -= 1;
        if (processWaiting) processWaiting.count -= 1;
        throw error;
      },
    );
  }

  /** Closes the packet at its deadline and refunds the exact remainder, once. */
  expire(nowMs: number): Promise<void> {
    if (this.expiring !== undefined) return this.expiring;
    if (this.status !== 'live' || nowMs < this.packet.expiresAtMs) return Promise.resolve();
    if (this.poisoned) return Promise.reject(new UnavailableError('this packet is recovering from a failed write'));
    this.expired = true;
    const event: PacketEvent = {
      kind: 'expire',
      packetId: this.packet.id,
      senderId: this.packet.senderId,
      refundFen: this.remainingFen,
      atMs: nowMs,
    };
    this.expiring = this.write(event);
    return this.expiring;
  }

  snapshot(): PacketSnapshot {
    const claims = this.claimsInOrder.filter((record) => record.durable).map((record) => record.claim);
    const status = statusOf(this.packetDurable, claims.length, this.expiredDurable, this.phaseDurable);
    return { packet: this.packetDurable, status, claims, phase: this.phaseDurable };
  }

  /**
   * A signal about a provider-paid packet's payment (domain/payment.ts), decided in order with
   * the opens: a claim decided before a `funded` is held and credited by it, one after it is
   * credited as booked. Resolves once the change is durable; a repeat resolves once the change
   * it repeats is durable, so a 200 to the provider is always true.
   */
  settlePayment(signal: PaymentSignal, nowMs: number): Promise<PaymentAnswer> {
    const payment = this.packet.payment;
    if (payment === undefined) return Promise.resolve({ change: { kind: 'none', why: 'repeat' }, phase: this.phase });
    if (this.poisoned) return Promise.reject(new UnavailableError('this packet is recovering from a failed write; try again'));
    const change = decidePayment({ phase: this.phase, lateCredited: this.lateCredited }, signal);
    if (change.kind === 'none') {
      const phase = this.phase;
      return this.paymentWrite.then(() => ({ change, phase }));
    }
    if (!isOpenable(this.phase) && this.phase !== 'cancelled' && isOpenable(phaseAfter(this.phase, change))) {
      // First openable now: the 24 hours start here.
      this.packet = { ...this.packet, liveAtMs: nowMs, expiresAtMs: nowMs + this.dependencies.limits.ttlMs };
    }
    this.phase = phaseAfter(this.phase, change);
    if (change.kind === 'late_credit') this.lateCredited = true;
    const packet = this.packet;
    const event: PaymentEvent = {
      kind: 'payment',
      packetId: packet.id,
      change: change.kind,
      provider: payment.provider,
      orderId: payment.orderId,
      senderId: packet.senderId,
      amountFen: packet.totalFen,
      liveAtMs: packet.liveAtMs,
      expiresAtMs: packet.expiresAtMs,
      ...(change.kind === 'cancelled' ? { reason: change.reason } : {}),
      claimsBefore: this.claimsInOrder.length,
      atMs: nowMs,
    };
    const phase = this.phase;
    this.paymentWrite = this.write(event).then(() => {
      this.phaseDurable = phase;
      this.packetDurable = packet;
    });
    return this.paymentWrite.then(() => ({ change, phase }));
  }

  private decideClaim(userId: string, nowMs: number): ClaimRecord {
    const seq = this.claimsInOrder.length + 1;
    const amountFen = nextShare(
      {
        type: this.packet.type,
        totalFen: this.packet.totalFen,
        count: this.packet.count,
        remainingFen: this.remainingFen,
        remainingCount: this.packet.count - this.claimsInOrder.length,
        seq,
        seed: (this.seed ??= this.dependencies.seedFor(this.packet.id)),
      },
      this.dependencies.limits,
    );
    const claim: Claim = { packetId: this.packet.id, seq, userId, amountFen, claimedAtMs: nowMs };
    const held = this.phase === 'awaiting_funds';
    this.remainingFen -= amountFen;
    this.claimedFen += amountFen;
    this.inFlight += 1;
    const processWaiting = this.dependencies.processWaiting;
    if (processWaiting) processWaiting.count += 1;
    const record: ClaimRecord = {
      claim,
      durable: false,
      // Every opener chains on this promise, so a failure is always observed by someone.
      settled: this.dependencies.commit(this.claimEvent(claim), this.poison).then(
        (): OpenOutcome => {
          this.inFlight -= 1;
          if (processWaiting) processWaiting.count -= 1;
          record.durable = true;
          if (!held) this.dependencies.onClaimDurable?.(this.packet, claim, claim.seq === this.packet.count);
          return { state: 'claimed', amountFen, seq };
        },
        (error: unknown) => {
          this.inFlight -= 1;
          if (processWaiting) processWaiting.count -= 1;
          this.poisoned = true;
          this.dependencies.onClaimFailed?.(claim);
          throw error;
        },
      ),
    };
    this.claimsInOrder.push(record);
    (this.claimsByUser ??= new Map()).set(userId, record);
    this.dependencies.onClaimDecided?.(claim);
    this.checkInvariants();
    return record;
  }

  /** A claim decided before the packet's money arrived is held: booked now, credited when funded. */
  private claimEvent(claim: Claim): PacketEvent {
    const event = { kind: 'claim', packetId: claim.packetId, seq: claim.seq, userId: claim.userId, amountFen: claim.amountFen, atMs: claim.claimedAtMs } as const;
    return this.phase === 'awaiting_funds' ? { ...event, held: true } : event;
  }

  /** Called synchronously by the log when a write failed, before any rejection is delivered. */
  private poisonCallback: (() => void) | undefined;
  private get poison(): () => void {
    return (this.poisonCallback ??= () => {
      this.poisoned = true;
    });
  }

  private write(event: PacketEvent): Promise<void> {
    this.inFlight += 1;
    return this.dependencies.commit(event, this.poison).then(
      () => {
        this.inFlight -= 1;
        if (event.kind === 'expire') {
          this.expiredDurable = true;
          this.dependencies.onExpiredDurable?.(this.packet);
        }
      },
      (error: unknown) => {
        this.inFlight -= 1;
        this.poisoned = true;
        throw error;
      },
    );
  }

  private checkInvariants(): void {
    invariant(this.claimedFen + this.remainingFen === this.packet.totalFen, `packet ${this.packet.id}: claimed + remaining ≠ total`);
    invariant(this.remainingFen >= 0, `packet ${this.packet.id}: remaining below zero`);
    invariant(this.claimsInOrder.length <= this.packet.count, `packet ${this.packet.id}: more claims than shares`);
    invariant(
      this.claimsInOrder.length < this.packet.count || this.remainingFen === 0,
      `packet ${this.packet.id}: finished with money left`,
    );
  }
}
