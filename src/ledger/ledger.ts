// The ledger as the application uses it: sending, deposits, balances, records, the packets
// actors are built from, and reconciliation. This is the ledger's boundary: a database that
// does not answer comes out of here as UnavailableError (keeping the driver's error as its
// cause), classified once, so nothing above it knows a driver's error codes.
import { sql } from 'drizzle-orm';
import { UnavailableError } from '../domain/errors.js';
import type { Packet, StoredPacket } from '../domain/packet.js';
import type { EventLog } from '../log/event-log.js';
import type { Fen } from '../money/money.js';
import { isConnectionError, type Database } from './database.js';
import { findIdempotent, runIdempotent, type IdempotentResult } from './idempotency.js';
import { recordConflicts, type LedgerConflict } from './conflicts.js';
import { recordNotifications } from './notifications.js';
import { sentEvent } from '../domain/notification.js';
import {
  bookedClaims,
  duePayments,
  heldFen,
  markOrderClosed,
  rememberNonce,
  resweep,
  storeProviderPacket,
  type DuePayment,
  type PacketOrder,
} from './payments.js';
import { duePacketIds, loadStoredPacket, storeSentPacket } from './packet-store.js';
import { reconcile, type ReconciliationReport } from './reconciliation.js';
import type { Cursor } from './record-cursor.js';
import { receivedRecords, sentRecords, type ReceivedRecords, type SentRecords } from './records.js';
import { deposit, MoneyInLimitError, walletBalance } from './wallets.js';

/** What a send stores under its key: the packet, and for a provider-paid one the order to pay. */
export type SentPacket = Packet & { readonly order?: PacketOrder };
export type SendBooking = IdempotentResult<SentPacket, { balanceFen: Fen }>;
export type DepositBooking = IdempotentResult<{ userId: string; balanceFen: Fen }, { reason: string }>;

/** Who asked, under which key, with which canonical request (its hash decides "same request"). */
export interface IdempotencyRequest {
  readonly callerId: string;
  readonly key: string;
  readonly request: unknown;
}

/** What the application uses of the ledger: this class, or its proxy in the storage thread (src/app/storage-thread.ts). */
export type LedgerPort = Pick<
  Ledger,
  | 'send'
  | 'findSend'
  | 'deposit'
  | 'wallet'
  | 'bookedClaims'
  | 'load'
  | 'duePacketIds'
  | 'sentRecords'
  | 'receivedRecords'
  | 'reconcile'
  | 'check'
  | 'duePayments'
  | 'markOrderClosed'
  | 'resweep'
  | 'rememberNonce'
>;

export class Ledger implements LedgerPort {
  constructor(
    readonly database: Database,
    private readonly log: EventLog,
  ) {}

  /**
   * Debits the sender and stores the live packet, once per Idempotency-Key. With an order (paid
   * through a provider) nothing is debited: the packet is stored pending its payment, with the order.
   */
  send(packet: Packet, idempotency: IdempotencyRequest, order?: PacketOrder): Promise<SendBooking> {
    return this.guard(() =>
      runIdempotent(
        this.database.db,
        { userId: idempotency.callerId, route: 'send', key: idempotency.key, request: idempotency.request },
        async (tx): Promise<{ ok: true; value: SentPacket } | { ok: false; rejection: { balanceFen: Fen } }> => {
          if (order !== undefined) {
            await storeProviderPacket(tx, packet, order);
          } else {
            const stored = await storeSentPacket(tx, packet);
            if (!stored.ok) return { ok: false, rejection: { balanceFen: stored.balanceFen } };
          }
          // packet.sent is written with the packet: the log holds no event for a send.
          await recordNotifications(tx, [sentEvent(packet)], Date.now());
          return { ok: true, value: order === undefined ? packet : { ...packet, order } };
        },
      ),
    );
  }

  /** A send already stored under this key (replayed, or a conflict), or null: asked before a provider order is made. */
  findSend(idempotency: IdempotencyRequest): Promise<SendBooking | null> {
    return this.guard(() =>
      findIdempotent<SentPacket>(this.database.db, { userId: idempotency.callerId, route: 'send', key: idempotency.key, request: idempotency.request }),
    );
  }

  /** Funds a balance (a stand-in for a bank top-up), once per the caller's Idempotency-Key. */
  deposit(userId: string, amountFen: Fen, idempotency: IdempotencyRequest): Promise<DepositBooking> {
    const reference = `${idempotency.callerId}:${idempotency.key}`;
    return this.guard(() =>
      runIdempotent(
        this.database.db,
        { userId: idempotency.callerId, route: 'deposit', key: idempotency.key, request: idempotency.request },
        async (tx) => {
          try {
            return { ok: true, value: { userId, balanceFen: await deposit(tx, userId, amountFen, reference) } };
          } catch (error) {
            if (error instanceof MoneyInLimitError) return { ok: false, rejection: { reason: error.message } };
            throw error;
          }
        },
      ),
    );
  }

  /**
   * The balance, the claims held for packets awaiting their funds (part of `pending`), and which
   * of the claims this process still counts as pending the ledger has booked meanwhile — all
   * from one snapshot, so a claim booked between two reads is counted once, not twice or never.
   */
  wallet(userId: string, pendingIds: readonly string[] = []): Promise<{ balanceFen: Fen; heldFen: Fen; booked: string[] }> {
    return this.guard(() =>
      this.database.db.transaction(async (tx) => {
        await tx.execute(sql`set transaction isolation level repeatable read`);
        return { balanceFen: await walletBalance(tx, userId), heldFen: await heldFen(tx, userId), booked: await bookedClaims(tx, pendingIds) };
      }),
    );
  }

  /** Which of these claims the ledger has booked (for a process whose pending credits no local consumer settles). */
  bookedClaims(transferIds: readonly string[]): Promise<string[]> {
    return this.guard(() => bookedClaims(this.database.db, transferIds));
  }

  duePayments(cutoffMs: number, limit: number): Promise<DuePayment[]> {
    return this.guard(() => duePayments(this.database.db, cutoffMs, limit));
  }

  markOrderClosed(orderId: string, atMs: number): Promise<void> {
    return this.guard(() => markOrderClosed(this.database.db, orderId, atMs));
  }

  /** The second sweep (payments.ts); conflicts it meets are recorded like the consumer's. */
  resweep(cutoffMs: number): Promise<{ packets: number; credited: number; conflicts: LedgerConflict[] }> {
    return this.guard(() =>
      this.database.db.transaction(async (tx) => {
        const swept = await resweep(tx, cutoffMs);
        return { ...swept, conflicts: await recordConflicts(tx, swept.conflicts) };
      }),
    );
  }

  /** False when the nonce was seen before: the notification is a replay. */
  rememberNonce(provider: string, nonce: string, timestampMs: number, nowMs: number, keepMs: number): Promise<boolean> {
    return this.guard(() => this.database.db.transaction((tx) => rememberNonce(tx, provider, nonce, timestampMs, nowMs, keepMs)));
  }

  load(packetId: string): Promise<StoredPacket | null> {
    return this.guard(() => loadStoredPacket(this.database.db, packetId));
  }

  duePacketIds(nowMs: number, limit: number): Promise<string[]> {
    return this.guard(() => duePacketIds(this.database.db, nowMs, limit));
  }

  sentRecords(userId: string, year: number, after: Cursor | null): Promise<SentRecords> {
    return this.guard(() => sentRecords(this.database.db, userId, year, after));
  }

  receivedRecords(userId: string, year: number, after: Cursor | null): Promise<ReceivedRecords> {
    return this.guard(() => receivedRecords(this.database.db, userId, year, after));
  }

  reconcile(): Promise<ReconciliationReport> {
    return this.guard(() => reconcile(this.database.db, this.log));
  }

  /** Resolves when the database answers. */
  async check(): Promise<void> {
    await this.guard(() => this.database.db.execute(sql`select 1`));
  }

  private async guard<Result>(work: () => Promise<Result>): Promise<Result> {
    try {
      return await work();
    } catch (error) {
      if (isConnectionError(error)) throw new UnavailableError(`the database (${this.database.where}) is unreachable`, { cause: error });
      throw error;
    }
  }
}
