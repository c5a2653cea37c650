// Compare, don't drop: an event or a transfer whose id the ledger already holds with other
// terms is a named conflict (as TigerBeetle's create_transfer answers exists_with_different_*).
// A conflict is recorded durably in the same transaction as the batch that met it, under an
// id derived from the conflicting terms, so a replay of the same event records it once and a
// different conflicting event for the same id is recorded beside it.
import { sql } from 'drizzle-orm';
import { claimTransferId, escrowAccount, refundTransferId, walletAccount, type ClaimEvent, type ExpireEvent } from '../log/events.js';
import type { Fen } from '../money/money.js';
import { rowsOf, type Executor } from './database.js';

export type LedgerConflictCode =
  /** The transfer (or claim) id exists and the amount differs. */
  | 'exists_with_different_amount'
  /** The claim (packet, seq) exists for another user. */
  | 'exists_with_different_user'
  /** The transfer id exists between other accounts. */
  | 'exists_with_different_accounts'
  /** The user already holds another seq of the same packet: a second share for one user. */
  | 'user_already_claimed_other_seq';

/** The terms of a movement as the event asked for them, or as the ledger stores them. */
export interface LedgerTerms {
  readonly debitAccountId: string;
  readonly creditAccountId: string;
  readonly amountFen: Fen;
  /** For claims: who and which share; null for other transfers. */
  readonly userId: string | null;
  readonly seq: number | null;
}

export interface LedgerConflict {
  /** Deterministic: the transfer id and the asked terms. Recording the same conflict twice keeps one row. */
  readonly id: string;
  readonly code: LedgerConflictCode;
  /** The transfer id the event or request maps to (`claim:<packet>:<seq>`, `refund:<packet>`, `deposit:<ref>`). */
  readonly transferId: string;
  /** The packet the event belongs to; null for a transfer outside any packet (a deposit). */
  readonly packetId: string | null;
  /** What the event asked for. */
  readonly expected: LedgerTerms;
  /** What the ledger already holds under the conflicting key. */
  readonly stored: LedgerTerms;
  readonly message: string;
}

export function conflictId(transferId: string, expected: LedgerTerms): string {
  return `${transferId}|${expected.debitAccountId}>${expected.creditAccountId}|${expected.amountFen}`;
}

/** The transfer an event asks for, as terms. */
export function eventTerms(event: ClaimEvent | ExpireEvent): { transferId: string; terms: LedgerTerms } {
  if (event.kind === 'claim') {
    return {
      transferId: claimTransferId(event.packetId, event.seq),
      terms: { debitAccountId: escrowAccount(event.packetId), creditAccountId: walletAccount(event.userId), amountFen: event.amountFen, userId: event.userId, seq: event.seq },
    };
  }
  return {
    transferId: refundTransferId(event.packetId),
    terms: { debitAccountId: escrowAccount(event.packetId), creditAccountId: walletAccount(event.senderId), amountFen: event.refundFen, userId: null, seq: null },
  };
}

/** The id a conflict of this event is (or would be) recorded under. */
export function conflictIdOfEvent(event: ClaimEvent | ExpireEvent): string {
  const { transferId, terms } = eventTerms(event);
  return conflictId(transferId, terms);
}

const describeTerms = (terms: LedgerTerms) =>
  `${terms.userId !== null ? `user ${terms.userId} seq ${terms.seq} ` : ''}${terms.debitAccountId} → ${terms.creditAccountId} ${terms.amountFen} fen`;

export function newConflict(
  code: LedgerConflictCode,
  transferId: string,
  packetId: string | null,
  expected: LedgerTerms,
  stored: LedgerTerms,
): LedgerConflict {
  return {
    id: conflictId(transferId, expected),
    code,
    transferId,
    packetId,
    expected,
    stored,
    message: `${transferId}: ${code} (asked ${describeTerms(expected)}; stored ${describeTerms(stored)})`,
  };
}

/** The code for a transfer met again under its id, or null when the terms are the same (a replay). */
export function compareTransferTerms(expected: LedgerTerms, stored: LedgerTerms): LedgerConflictCode | null {
  if (expected.debitAccountId !== stored.debitAccountId || expected.creditAccountId !== stored.creditAccountId) {
    return 'exists_with_different_accounts';
  }
  if (expected.amountFen !== stored.amountFen) return 'exists_with_different_amount';
  return null;
}

/** The code for a claim met again under (packet, seq), or null when the terms are the same (a replay). */
export function compareClaimTerms(expected: LedgerTerms, stored: LedgerTerms): LedgerConflictCode | null {
  if (expected.userId !== stored.userId) return 'exists_with_different_user';
  if (expected.amountFen !== stored.amountFen) return 'exists_with_different_amount';
  return null;
}

/** Stores the conflicts; returns the ones not recorded before (a replayed batch records nothing new). */
export async function recordConflicts(executor: Executor, conflicts: readonly LedgerConflict[]): Promise<LedgerConflict[]> {
  const unique = [...new Map(conflicts.map((conflict) => [conflict.id, conflict])).values()];
  if (unique.length === 0) return [];
  const inserted = await rowsOf<{ id: string }>(
    executor,
    sql`insert into ledger_conflicts (id, code, transfer_id, packet_id, expected, stored, message)
        select id, code, transfer_id, packet_id, expected::jsonb, stored::jsonb, message
        from unnest(${sql.param(unique.map((conflict) => conflict.id))}::text[],
                    ${sql.param(unique.map((conflict) => conflict.code))}::text[],
                    ${sql.param(unique.map((conflict) => conflict.transferId))}::text[],
                    ${sql.param(unique.map((conflict) => conflict.packetId))}::text[],
                    ${sql.param(unique.map((conflict) => JSON.stringify(conflict.expected)))}::text[],
                    ${sql.param(unique.map((conflict) => JSON.stringify(conflict.stored)))}::text[],
                    ${sql.param(unique.map((conflict) => conflict.message))}::text[])
             as input(id, code, transfer_id, packet_id, expected, stored, message)
        -- The id is the conflicting terms: meeting the same conflict again (a replay) is already recorded.
        on conflict (id) do nothing
        returning id`,
  );
  const fresh = new Set(inserted.map((row) => row.id));
  return unique.filter((conflict) => fresh.has(conflict.id));
}

interface ConflictRow {
  id: string;
  code: LedgerConflictCode;
  transfer_id: string;
  packet_id: string | null;
  expected: LedgerTerms | string;
  stored: LedgerTerms | string;
  message: string;
}

const parsed = (value: LedgerTerms | string): LedgerTerms => (typeof value === 'string' ? (JSON.parse(value) as LedgerTerms) : value);

/** Every recorded conflict, oldest first. */
export async function loadConflicts(executor: Executor): Promise<LedgerConflict[]> {
  const rows = await rowsOf<ConflictRow>(
    executor,
    sql`select id, code, transfer_id, packet_id, expected, stored, message from ledger_conflicts order by recorded_at, id`,
  );
  return rows.map((row) => ({
    id: row.id,
    code: row.code,
    transferId: row.transfer_id,
    packetId: row.packet_id,
    expected: parsed(row.expected),
    stored: parsed(row.stored),
    message: row.message,
  }));
}
