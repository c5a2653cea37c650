// The real ledger behind the contract: a Database, a LedgerConsumer that applies the log to
// it, and the log. The application wires the same parts itself; this shape exists so the
// ledger conformance suite runs against the real consumer exactly as it runs in production.
import { sql } from 'drizzle-orm';
import type { Packet, StoredPacket } from '../../src/domain/packet.js';
import type { EventLog } from '../../src/log/event-log.js';
import type { ClaimEvent, ExpireEvent, PacketEvent } from '../../src/log/events.js';
import type { Fen } from '../../src/money/money.js';
import { conflictIdOfEvent, type LedgerConflict } from '../../src/ledger/conflicts.js';
import type { AppliedEvents, DepositResult, LedgerContract } from './ledger-contract.js';
import { rowsOf, type Database } from '../../src/ledger/database.js';
import { LedgerConsumer } from '../../src/ledger/ledger-consumer.js';
import { loadStoredPacket, storeSentPacket, type SendResult } from '../../src/ledger/packet-store.js';
import { reconcile, type ReconciliationReport } from '../../src/ledger/reconciliation.js';
import { TransferConflictError } from '../../src/ledger/transfers.js';
import { deposit, walletBalance } from '../../src/ledger/wallets.js';

/** How long applyEvents waits for the consumer to reach the log's head. */
const APPLY_TIMEOUT_MS = 30_000;

export class DatabaseLedger implements LedgerContract {
  private consumer: LedgerConsumer | undefined;
  /** Conflicts recorded since the last applyEvents began. */
  private recorded: LedgerConflict[] = [];

  constructor(
    readonly database: Database,
    readonly log: EventLog,
  ) {}

  /** Starts a fresh consumer from the stored positions (as a restarted process would). */
  async start(): Promise<LedgerConsumer> {
    if (this.consumer !== undefined) throw new Error('database ledger: already started');
    const consumer = new LedgerConsumer(this.database.db, this.log, {
      onConflict: (conflict) => this.recorded.push(conflict),
    });
    await consumer.start();
    this.consumer = consumer;
    return consumer;
  }

  async stop(): Promise<void> {
    await this.consumer?.stop();
    this.consumer = undefined;
  }

  async depositTo(userId: string, amountFen: Fen, reference: string): Promise<DepositResult> {
    try {
      return { ok: true, balanceFen: await deposit(this.database.db, userId, amountFen, reference) };
    } catch (error) {
      const conflict = error instanceof TransferConflictError ? error.conflicts[0] : undefined;
      if (conflict === undefined) throw error;
      return { ok: false, conflict };
    }
  }

  sendPacket(packet: Packet): Promise<SendResult> {
    return this.database.db.transaction((tx) => storeSentPacket(tx, packet));
  }

  async applyEvents(events: readonly PacketEvent[]): Promise<AppliedEvents> {
    const consumer = this.consumer;
    if (consumer === undefined) throw new Error('database ledger: not started');
    this.recorded = [];
    await this.log.append(events);
    await consumer.waitAppliedAll(await this.log.heads(), APPLY_TIMEOUT_MS);
    const conflicts = this.recorded;
    this.recorded = [];
    // Applied = not recorded as a conflict, now or by an earlier delivery of the same event.
    // These suites feed claims and expiries only (payments have their own tests).
    const ids = events.map((event) => conflictIdOfEvent(event as ClaimEvent | ExpireEvent));
    const rows = await rowsOf<{ id: string }>(
      this.database.db,
      sql`select id from ledger_conflicts where id = any(${sql.param(ids)}::text[])`,
    );
    const conflicting = new Set(rows.map((row) => row.id));
    return { applied: events.filter((_, index) => !conflicting.has(ids[index]!)), conflicts };
  }

  loadPacket(packetId: string): Promise<StoredPacket | null> {
    return loadStoredPacket(this.database.db, packetId);
  }

  walletBalance(userId: string): Promise<Fen> {
    return walletBalance(this.database.db, userId);
  }

  async sumOfBalances(): Promise<bigint> {
    const rows = await rowsOf<{ sum: string | null }>(this.database.db, sql`select sum(balance_fen)::text as sum from accounts`);
    return BigInt(rows[0]?.sum ?? 0);
  }

  reconcile(): Promise<ReconciliationReport> {
    return reconcile(this.database.db, this.log);
  }
}
