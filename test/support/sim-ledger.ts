// A fake storage + double-entry ledger for the engine simulation. It consumes the MemoryLog the
// way the real ledger consumer does (batches, in order, at least once), applies each event
// idempotently by its transfer id, and rebuilds packets for the engine only after it has applied
// the log up to its head — the contract PacketSource.load promises. What the real ledger's unique
// constraints would refuse is recorded as a violation instead of being applied, so a simulation
// can fail with its seed.
import type { PacketSource } from '../../src/engine/engine.js';
import type { Claim, Packet, StoredPacket } from '../../src/domain/packet.js';
import type { LogBatch, Subscription } from '../../src/log/event-log.js';
import {
  claimTransferId,
  DEPOSITS_ACCOUNT,
  depositTransferId,
  escrowAccount,
  refundTransferId,
  sendTransferId,
  walletAccount,
  type ClaimEvent,
  type ExpireEvent,
  type PacketEvent,
} from '../../src/log/events.js';
import type { MemoryLog } from '../../src/log/memory-log.js';
import type { Fen } from '../../src/money/money.js';

export interface SimTransfer {
  readonly id: string;
  readonly debit: string;
  readonly credit: string;
  readonly amountFen: Fen;
}

export interface SimPacketRow {
  readonly packet: Packet;
  /** Applied claims in seq order. */
  readonly claims: Claim[];
  expired: boolean;
  refundFen: Fen | undefined;
}

export interface SimLedgerChaos {
  /** A seeded source in [0, 1): the ledger draws from it in a fixed order, so runs replay. */
  readonly random: () => number;
  /** Chance that a batch is preceded by the previous batch again (a consumer that crashed before storing its position). */
  readonly redeliveryRate: number;
  /** A load waits up to this many event-loop turns before reading, so activations overlap. */
  readonly loadDelayTicksMax: number;
  /** A batch waits up to this many turns before it is applied, so the ledger lags the log as a real consumer does. */
  readonly applyDelayTicksMax: number;
}

const NO_CHAOS: SimLedgerChaos = { random: () => 0.5, redeliveryRate: 0, loadDelayTicksMax: 0, applyDelayTicksMax: 0 };

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

export class SimLedger implements PacketSource {
  readonly balances = new Map<string, Fen>();
  readonly transfers = new Map<string, SimTransfer>();
  readonly rows = new Map<string, SimPacketRow>();
  /** What a real ledger would have refused (unique constraint, overdraft, a claim out of order): must stay empty. */
  readonly violations: string[] = [];
  /** The log offset up to which every event is applied. */
  appliedOffset = 0;
  depositedFen: Fen = 0;
  /** Set to make loads fail, to simulate unreachable storage. */
  failLoads = false;
  loadCalls = 0;
  eventsApplied = 0;
  eventsRedelivered = 0;
  private readonly waiters: { offset: number; resolve: () => void }[] = [];
  private subscription: Subscription | undefined;
  private previousEvents: readonly PacketEvent[] = [];

  constructor(
    private readonly log: MemoryLog,
    private readonly chaos: SimLedgerChaos = NO_CHAOS,
  ) {}

  async start(): Promise<void> {
    this.subscription = await this.log.subscribe([], (batch) => this.applyBatch(batch));
  }

  async stop(): Promise<void> {
    await this.subscription?.stop();
  }

  balance(account: string): Fen {
    return this.balances.get(account) ?? 0;
  }

  deposit(userId: string, amountFen: Fen, reference: string): void {
    this.transfer(depositTransferId(reference), DEPOSITS_ACCOUNT, walletAccount(userId), amountFen, { overdraft: true });
    this.depositedFen += amountFen;
  }

  /** Debits the sender and stores the packet in one step, as the send transaction does. */
  send(packet: Packet): 'sent' | 'insufficient' {
    if (this.rows.has(packet.id)) throw new Error(`sim: packet ${packet.id} sent twice`);
    if (this.balance(walletAccount(packet.senderId)) < packet.totalFen) return 'insufficient';
    this.transfer(sendTransferId(packet.id), walletAccount(packet.senderId), escrowAccount(packet.id), packet.totalFen);
    this.rows.set(packet.id, { packet, claims: [], expired: false, refundFen: undefined });
    return 'sent';
  }

  /** PacketSource: the packet and its applied claims, once the ledger has applied the log up to its head. */
  async load(packetId: string): Promise<StoredPacket | null> {
    this.loadCalls += 1;
    const head = Number((await this.log.headFor()).nextOffset);
    const delayTicks = Math.floor(this.chaos.random() * (this.chaos.loadDelayTicksMax + 1));
    for (let index = 0; index < delayTicks; index += 1) await tick();
    if (this.failLoads) throw new Error('sim storage: unreachable (simulated outage)');
    await this.waitApplied(head);
    const row = this.rows.get(packetId);
    if (row === undefined) return null;
    return { packet: row.packet, claims: row.claims.map((claim) => ({ ...claim })), expired: row.expired };
  }

  /** Resolves once every event before `offset` is applied. */
  waitApplied(offset: number): Promise<void> {
    if (this.appliedOffset >= offset) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ offset, resolve }));
  }

  get caughtUp(): boolean {
    return this.appliedOffset === this.log.events.length;
  }

  private async applyBatch(batch: LogBatch): Promise<void> {
    const delayTicks = Math.floor(this.chaos.random() * (this.chaos.applyDelayTicksMax + 1));
    for (let index = 0; index < delayTicks; index += 1) await tick();
    // At least once: sometimes the previous batch comes again before this one. Idempotency must absorb it.
    if (this.previousEvents.length > 0 && this.chaos.random() < this.chaos.redeliveryRate) {
      for (const event of this.previousEvents) this.apply(event);
      this.eventsRedelivered += this.previousEvents.length;
    }
    for (const event of batch.events) this.apply(event);
    this.eventsApplied += batch.events.length;
    this.previousEvents = batch.events;
    const position = batch.positions.find((entry) => entry.partition === 0);
    if (position !== undefined) this.appliedOffset = Number(position.nextOffset);
    for (let index = this.waiters.length - 1; index >= 0; index -= 1) {
      const waiter = this.waiters[index]!;
      if (this.appliedOffset >= waiter.offset) {
        this.waiters.splice(index, 1);
        waiter.resolve();
      }
    }
  }

  private apply(event: PacketEvent): void {
    if (event.kind === 'claim') this.applyClaim(event);
    else this.applyExpire(event);
  }

  private applyClaim(event: ClaimEvent): void {
    const id = claimTransferId(event.packetId, event.seq);
    const row = this.rows.get(event.packetId);
    if (this.sameAsExisting(id, escrowAccount(event.packetId), walletAccount(event.userId), event.amountFen)) return;
    if (row === undefined) return this.violate(`${id}: claim for an unknown packet`);
    if (row.expired) return this.violate(`${id}: claim after the packet was refunded`);
    if (event.seq !== row.claims.length + 1) return this.violate(`${id}: claims are not a prefix (have ${row.claims.length})`);
    if (row.claims.length >= row.packet.count) return this.violate(`${id}: more claims than shares`);
    if (row.claims.some((claim) => claim.userId === event.userId)) return this.violate(`${id}: ${event.userId} claims twice`);
    if (!this.transfer(id, escrowAccount(event.packetId), walletAccount(event.userId), event.amountFen)) return;
    row.claims.push({ packetId: event.packetId, seq: event.seq, userId: event.userId, amountFen: event.amountFen, claimedAtMs: event.atMs });
  }

  private applyExpire(event: ExpireEvent): void {
    const id = refundTransferId(event.packetId);
    if (this.sameAsExisting(id, escrowAccount(event.packetId), walletAccount(event.senderId), event.refundFen)) return;
    const row = this.rows.get(event.packetId);
    if (row === undefined) return this.violate(`${id}: refund of an unknown packet`);
    if (event.senderId !== row.packet.senderId) return this.violate(`${id}: refund to ${event.senderId}, not the sender`);
    if (row.claims.length === row.packet.count) return this.violate(`${id}: refund of a finished packet`);
    const remainderFen = this.balance(escrowAccount(event.packetId));
    if (event.refundFen !== remainderFen) return this.violate(`${id}: refund ${event.refundFen} ≠ remainder ${remainderFen}`);
    if (!this.transfer(id, escrowAccount(event.packetId), walletAccount(event.senderId), event.refundFen)) return;
    row.expired = true;
    row.refundFen = event.refundFen;
  }

  /** True if the transfer exists with this payload (a replay: nothing to do); a different payload is a violation. */
  private sameAsExisting(id: string, debit: string, credit: string, amountFen: Fen): boolean {
    const existing = this.transfers.get(id);
    if (existing === undefined) return false;
    if (existing.debit !== debit || existing.credit !== credit || existing.amountFen !== amountFen) {
      this.violate(`${id}: exists_with_different_payload (${existing.credit} ${existing.amountFen} vs ${credit} ${amountFen})`);
    }
    return true;
  }

  private transfer(id: string, debit: string, credit: string, amountFen: Fen, options: { overdraft?: boolean } = {}): boolean {
    if (this.sameAsExisting(id, debit, credit, amountFen)) return false;
    if (!Number.isSafeInteger(amountFen) || amountFen <= 0) {
      this.violate(`${id}: amount ${amountFen} is not a positive integer`);
      return false;
    }
    if (options.overdraft !== true && this.balance(debit) < amountFen) {
      this.violate(`${id}: ${debit} would go below zero (${this.balance(debit)} − ${amountFen})`);
      return false;
    }
    this.balances.set(debit, this.balance(debit) - amountFen);
    this.balances.set(credit, this.balance(credit) + amountFen);
    this.transfers.set(id, { id, debit, credit, amountFen });
    return true;
  }

  private violate(message: string): void {
    this.violations.push(message);
  }
}
