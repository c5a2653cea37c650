// The ledger's contract: what every ledger (the real consumer on Postgres/PGlite, the test
// simulator) promises, so one conformance suite holds them all to it. Expected failures are
// results (insufficient balance, a conflict named by its code); broken invariants throw.
import type { Packet, StoredPacket } from '../../src/domain/packet.js';
import type { PacketEvent } from '../../src/log/events.js';
import type { Fen } from '../../src/money/money.js';
import type { LedgerConflict } from '../../src/ledger/conflicts.js';
import type { SendResult } from '../../src/ledger/packet-store.js';
import type { ReconciliationReport } from '../../src/ledger/reconciliation.js';

export type { LedgerConflict, LedgerConflictCode, LedgerTerms } from '../../src/ledger/conflicts.js';

/** A deposit reference reused with another user or amount is a conflict, not a second deposit. */
export type DepositResult = { readonly ok: true; readonly balanceFen: Fen } | { readonly ok: false; readonly conflict: LedgerConflict };

export interface AppliedEvents {
  /** The events the ledger now holds as booked (new or replayed with the same terms). */
  readonly applied: readonly PacketEvent[];
  /** The events it did not apply, each named by its code; recorded once, so a replay reports none again. */
  readonly conflicts: readonly LedgerConflict[];
}

export interface LedgerContract {
  /** Funds a wallet from the external account; `reference` makes it idempotent. A non-positive amount throws. */
  depositTo(userId: string, amountFen: Fen, reference: string): Promise<DepositResult>;
  /** Debits the sender and puts the total in the packet's escrow, atomically, if the balance covers it. */
  sendPacket(packet: Packet): Promise<SendResult>;
  /** Appends the events to the ledger's log and resolves once the ledger applied them. */
  applyEvents(events: readonly PacketEvent[]): Promise<AppliedEvents>;
  loadPacket(packetId: string): Promise<StoredPacket | null>;
  walletBalance(userId: string): Promise<Fen>;
  /** Σ of every account's balance: 0 after every commit. */
  sumOfBalances(): Promise<bigint>;
  reconcile(): Promise<ReconciliationReport>;
}
