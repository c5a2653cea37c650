// A fake storage + double-entry ledger for the engine simulation. It consumes the MemoryLog the
// way the real ledger consumer does (batches, in order, at least once), applies each event
// idempotently by its transfer id, and rebuilds packets for the engine only after it has applied
// the log up to its head — the contract PacketSource.load promises. It also implements the
// LedgerContract, so the ledger conformance suite holds it to what the real ledger does: an
// event that meets an existing claim or transfer with other terms is a conflict named by the
// same codes, recorded once. Every conflict and every other thing the real ledger would refuse
// is also a violation, so a simulation fails with its seed.
import type { PacketSource } from '../../src/engine/engine.js';
import { InvariantError } from '../../src/domain/errors.js';
import type { Claim, Packet, StoredPacket } from '../../src/domain/packet.js';
import {
  compareClaimTerms,
  compareTransferTerms,
  conflictIdOfEvent,
  eventTerms,
  newConflict,
  type LedgerConflict,
  type LedgerTerms,
} from '../../src/ledger/conflicts.js';
import type { AppliedEvents, DepositResult, LedgerContract } from './ledger-contract.js';
import type { SendResult } from '../../src/ledger/packet-store.js';
import type { Discrepancy, ReconciliationReport } from '../../src/ledger/reconciliation.js';
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

const claimTermsOf = (claim: Claim): LedgerTerms => ({
  debitAccountId: escrowAccount(claim.packetId),
  creditAccountId: walletAccount(claim.userId),
  amountFen: claim.amountFen,
  userId: claim.userId,
  seq: claim.seq,
});

const transferTermsOf = (transfer: SimTransfer): LedgerTerms => ({
  debitAccountId: transfer.debit,
  creditAccountId: transfer.credit,
  amountFen: transfer.amountFen,
  userId: null,
  seq: null,
});

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

export class SimLedger implements PacketSource, LedgerContract {
  readonly balances = new Map<string, Fen>();
  readonly transfers = new Map<string, SimTransfer>();
  readonly rows = new Map<string, SimPacketRow>();
  /** What a real ledger would have refused (unique constraint, overdraft, a claim out of order): must stay empty. */
  readonly violations: string[] = [];
  /** Conflicts met, by id, in the order met: the simulator's ledger_conflicts. */
  readonly conflicts = new Map<string, LedgerConflict>();
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

  /** Consumes the log from where this ledger stands (the start, at first). */
  async start(): Promise<void> {
    this.subscription = await this.log.subscribe([{ partition: 0, nextOffset: String(this.appliedOffset) }], (batch) => this.applyBatch(batch));
  }

  async stop(): Promise<void> {
    await this.subscription?.stop();
    this.subscription = undefined;
  }

  // ---- Test doors: what a crash, a bug or a hand edit would do to a ledger.

  /** A crash before any position was stored: the whole log is read again. */
  async replayFromStart(): Promise<void> {
    await this.stop();
    this.appliedOffset = 0;
    this.previousEvents = [];
    await this.start();
    await this.waitApplied(this.log.events.length);
  }

  /** A consumer bug that moved its position past events without applying them. */
  async skipInLog(events: readonly PacketEvent[]): Promise<void> {
    await this.stop();
    await this.log.append(events);
    this.appliedOffset = this.log.events.length;
    await this.start();
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

  // ---- LedgerContract: the same promises as the real ledger, for the conformance suite.

  async depositTo(userId: string, amountFen: Fen, reference: string): Promise<DepositResult> {
    if (!Number.isSafeInteger(amountFen) || amountFen <= 0) throw new InvariantError(`deposit ${reference}: amount must be a positive integer of fen`);
    const id = depositTransferId(reference);
    const terms: LedgerTerms = { debitAccountId: DEPOSITS_ACCOUNT, creditAccountId: walletAccount(userId), amountFen, userId: null, seq: null };
    const existing = this.transfers.get(id);
    if (existing !== undefined) {
      const code = compareTransferTerms(terms, transferTermsOf(existing));
      if (code !== null) return { ok: false, conflict: newConflict(code, id, null, terms, transferTermsOf(existing)) };
    } else {
      this.deposit(userId, amountFen, reference);
    }
    return { ok: true, balanceFen: this.balance(walletAccount(userId)) };
  }

  async sendPacket(packet: Packet): Promise<SendResult> {
    const sent = this.send(packet);
    return sent === 'sent' ? { ok: true } : { ok: false, reason: 'insufficient_balance', balanceFen: this.balance(walletAccount(packet.senderId)) };
  }

  async applyEvents(events: readonly PacketEvent[]): Promise<AppliedEvents> {
    const before = this.conflicts.size;
    await this.log.append(events);
    await this.waitApplied(this.log.events.length);
    const conflicts = [...this.conflicts.values()].slice(before);
    return { applied: events.filter((event) => !this.conflicts.has(conflictIdOfEvent(event as ClaimEvent | ExpireEvent))), conflicts };
  }

  async loadPacket(packetId: string): Promise<StoredPacket | null> {
    return this.load(packetId);
  }

  async walletBalance(userId: string): Promise<Fen> {
    return this.balance(walletAccount(userId));
  }

  async sumOfBalances(): Promise<bigint> {
    let sum = 0n;
    for (const balance of this.balances.values()) sum += BigInt(balance);
    return sum;
  }

  /** The real reconciliation's checks over the simulator's rows, transfers and log. */
  async reconcile(): Promise<ReconciliationReport> {
    const discrepancies: Discrepancy[] = [];
    for (const [packetId, row] of this.rows) {
      const total = BigInt(row.packet.totalFen);
      const claimed = row.claims.reduce((sum, claim) => sum + BigInt(claim.amountFen), 0n);
      const refund = BigInt(row.refundFen ?? 0);
      const escrow = BigInt(this.balance(escrowAccount(packetId)));
      const sent = BigInt(this.transfers.get(sendTransferId(packetId))?.amountFen ?? 0);
      if (sent !== total) discrepancies.push({ kind: 'packet', id: packetId, message: `sent ${sent} ≠ total ${total}` });
      const live = !row.expired && row.claims.length < row.packet.count;
      if (live) {
        if (escrow !== total - claimed) discrepancies.push({ kind: 'packet', id: packetId, message: `escrow ${escrow} ≠ total ${total} − claims ${claimed}` });
      } else if (claimed + refund !== total || escrow !== 0n) {
        discrepancies.push({ kind: 'packet', id: packetId, message: `claims ${claimed} + refund ${refund} ≠ total ${total} or escrow ${escrow} ≠ 0` });
      }
    }
    const posted = new Map<string, bigint>();
    for (const transfer of this.transfers.values()) {
      posted.set(transfer.debit, (posted.get(transfer.debit) ?? 0n) - BigInt(transfer.amountFen));
      posted.set(transfer.credit, (posted.get(transfer.credit) ?? 0n) + BigInt(transfer.amountFen));
    }
    let book = 0n;
    for (const [account, balance] of this.balances) {
      book += BigInt(balance);
      if (BigInt(balance) !== (posted.get(account) ?? 0n)) {
        discrepancies.push({ kind: 'account', id: account, message: `balance ${balance} ≠ Σ transfers ${posted.get(account) ?? 0n}` });
      }
    }
    if (book !== 0n) discrepancies.push({ kind: 'book', id: 'all', message: `Σ balances is ${book}, not 0` });
    for (const conflict of this.conflicts.values()) discrepancies.push({ kind: 'conflict', id: conflict.id, message: conflict.message });
    let checkedLogClaims = 0;
    const seen = new Set<string>();
    await this.log.scan([{ partition: 0, nextOffset: String(this.appliedOffset) }], (events) => {
      for (const event of events) {
        if (event.kind !== 'claim') continue;
        checkedLogClaims += 1;
        const key = conflictIdOfEvent(event);
        if (seen.has(key) || this.conflicts.has(key)) continue;
        seen.add(key);
        const id = claimTransferId(event.packetId, event.seq);
        const booked = this.rows.get(event.packetId)?.claims.find((claim) => claim.seq === event.seq);
        const transfer = this.transfers.get(id);
        if (booked === undefined) discrepancies.push({ kind: 'log', id, message: `${id}: in the log but not booked` });
        else if (booked.userId !== event.userId || booked.amountFen !== event.amountFen) {
          discrepancies.push({ kind: 'log', id, message: `${id}: the log says user ${event.userId} ${event.amountFen} fen, the ledger booked user ${booked.userId} ${booked.amountFen} fen` });
        } else if (transfer?.credit !== walletAccount(event.userId) || transfer.amountFen !== event.amountFen) {
          discrepancies.push({ kind: 'log', id, message: `${id}: booked, but its transfer differs or is missing` });
        }
      }
    });
    return { checkedPackets: this.rows.size, checkedAccounts: this.balances.size, checkedLogClaims, discrepancies };
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
    else if (event.kind === 'expire') this.applyExpire(event);
  }

  private applyClaim(event: ClaimEvent): void {
    const { transferId: id, terms } = eventTerms(event);
    const row = this.rows.get(event.packetId);
    // As the real consumer compares: the same (packet, seq), then the same (packet, user), then the transfer id.
    const sameSeq = row?.claims.find((claim) => claim.seq === event.seq);
    if (sameSeq !== undefined) {
      const stored = claimTermsOf(sameSeq);
      const code = compareClaimTerms(terms, stored);
      if (code !== null) this.conflict(newConflict(code, id, event.packetId, terms, stored));
      return;
    }
    const sameUser = row?.claims.find((claim) => claim.userId === event.userId);
    if (sameUser !== undefined) {
      return this.conflict(newConflict('user_already_claimed_other_seq', id, event.packetId, terms, claimTermsOf(sameUser)));
    }
    if (this.sameAsExisting(id, terms, event.packetId)) return;
    if (row === undefined) return this.violate(`${id}: claim for an unknown packet`);
    if (row.expired) return this.violate(`${id}: claim after the packet was refunded`);
    if (event.seq !== row.claims.length + 1) return this.violate(`${id}: claims are not a prefix (have ${row.claims.length})`);
    if (row.claims.length >= row.packet.count) return this.violate(`${id}: more claims than shares`);
    if (!this.transfer(id, escrowAccount(event.packetId), walletAccount(event.userId), event.amountFen)) return;
    row.claims.push({ packetId: event.packetId, seq: event.seq, userId: event.userId, amountFen: event.amountFen, claimedAtMs: event.atMs });
  }

  private applyExpire(event: ExpireEvent): void {
    const { transferId: id, terms } = eventTerms(event);
    if (event.refundFen > 0 && this.sameAsExisting(id, terms, event.packetId)) return;
    const row = this.rows.get(event.packetId);
    if (row === undefined) return this.violate(`${id}: refund of an unknown packet`);
    if (row.expired) return;
    if (event.senderId !== row.packet.senderId) return this.violate(`${id}: refund to ${event.senderId}, not the sender`);
    if (row.claims.length === row.packet.count) return this.violate(`${id}: refund of a finished packet`);
    const remainderFen = this.balance(escrowAccount(event.packetId));
    if (event.refundFen !== remainderFen) return this.violate(`${id}: refund ${event.refundFen} ≠ remainder ${remainderFen}`);
    if (event.refundFen > 0 && !this.transfer(id, escrowAccount(event.packetId), walletAccount(event.senderId), event.refundFen)) return;
    row.expired = true;
    row.refundFen = event.refundFen;
  }

  /** True if the transfer id exists: with the same terms a replay, with others a recorded conflict. */
  private sameAsExisting(id: string, terms: LedgerTerms, packetId: string | null): boolean {
    const existing = this.transfers.get(id);
    if (existing === undefined) return false;
    const stored = transferTermsOf(existing);
    const code = compareTransferTerms(terms, stored);
    if (code !== null) this.conflict(newConflict(code, id, packetId, terms, stored));
    return true;
  }

  /** Records a conflict once by its id (a replay meets it again), and fails the simulation through `violations`. */
  private conflict(conflict: LedgerConflict): void {
    if (this.conflicts.has(conflict.id)) return;
    this.conflicts.set(conflict.id, conflict);
    this.violate(conflict.message);
  }

  private transfer(id: string, debit: string, credit: string, amountFen: Fen, options: { overdraft?: boolean } = {}): boolean {
    const terms: LedgerTerms = { debitAccountId: debit, creditAccountId: credit, amountFen, userId: null, seq: null };
    const existing = this.transfers.get(id);
    if (existing !== undefined) {
      const code = compareTransferTerms(terms, transferTermsOf(existing));
      if (code !== null) this.violate(newConflict(code, id, null, terms, transferTermsOf(existing)).message);
      return false;
    }
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
