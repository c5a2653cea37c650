// Double-entry posting. A transfer debits one account and credits another by the same
// amount, so Σ of all balances stays 0. The transfer id is the idempotency key: posting
// the same transfer again changes nothing; the same id with other terms is a named conflict
// (exists_with_different_accounts / exists_with_different_amount), never silently skipped.
import { sql } from 'drizzle-orm';
import { InvariantError } from '../domain/errors.js';
import type { Fen } from '../money/money.js';
import { compareTransferTerms, newConflict, type LedgerConflict, type LedgerTerms } from './conflicts.js';
import { rowsOf, type Executor } from './database.js';

export interface Transfer {
  readonly id: string;
  readonly debitAccountId: string;
  readonly creditAccountId: string;
  readonly amountFen: Fen;
}

export interface PostedTransfers {
  /** Ids that were new and moved money. */
  readonly posted: Set<string>;
  /** Ids that exist with other terms: nothing was moved for them. */
  readonly conflicts: LedgerConflict[];
}

/** A caller asked for a transfer whose id exists with other terms; carries the named conflicts. */
export class TransferConflictError extends InvariantError {
  constructor(readonly conflicts: readonly LedgerConflict[]) {
    super(conflicts.map((conflict) => conflict.message).join('; '));
  }
}

/**
 * Posts a batch of transfers in bulk and throws TransferConflictError (an InvariantError) if an
 * id exists with other terms: for callers to whom that is a bug (a deposit reference reused).
 * Returns the ids that were new.
 */
export async function postTransfers(executor: Executor, transfers: readonly Transfer[]): Promise<Set<string>> {
  const { posted, conflicts } = await postTransfersComparing(executor, transfers);
  if (conflicts.length > 0) throw new TransferConflictError(conflicts);
  return posted;
}

/**
 * Posts a batch of transfers in bulk: one statement inserts the new ones and moves the
 * balances by exactly what was inserted. An id already there is compared field by field:
 * the same terms are a replay (nothing to do), other terms a conflict in the result.
 * Run it inside a transaction.
 */
export async function postTransfersComparing(executor: Executor, transfers: readonly Transfer[]): Promise<PostedTransfers> {
  if (transfers.length === 0) return { posted: new Set(), conflicts: [] };
  for (const transfer of transfers) {
    if (!Number.isSafeInteger(transfer.amountFen) || transfer.amountFen <= 0) {
      throw new InvariantError(`transfer ${transfer.id}: amount must be a positive integer of fen`);
    }
  }
  const ids = sql.param(transfers.map((transfer) => transfer.id));
  const debits = sql.param(transfers.map((transfer) => transfer.debitAccountId));
  const credits = sql.param(transfers.map((transfer) => transfer.creditAccountId));
  const amounts = sql.param(transfers.map((transfer) => String(transfer.amountFen)));
  const input = sql`select * from unnest(${ids}::text[], ${debits}::text[], ${credits}::text[], ${amounts}::bigint[]) as input(id, debit, credit, amount)`;

  const inserted = await rowsOf<{ id: string }>(
    executor,
    sql`with input as (${input}),
        inserted as (
          insert into transfers (id, debit_account_id, credit_account_id, amount_fen)
          select id, debit, credit, amount from input
          on conflict (id) do nothing
          returning id, debit_account_id, credit_account_id, amount_fen
        ),
        movements as (
          select debit_account_id as account_id, -amount_fen as delta from inserted
          union all
          select credit_account_id, amount_fen from inserted
        ),
        balanced as (
          insert into accounts (id, kind, balance_fen)
          select account_id, split_part(account_id, ':', 1), sum(delta)::bigint from movements group by account_id
          -- One lock order for every writer: concurrent ledger batches (several consumers, one per
          -- partition) that touch the same wallets cannot deadlock.
          order by account_id
          on conflict (id) do update set balance_fen = accounts.balance_fen + excluded.balance_fen
          returning id
        )
        select id from inserted`,
  );
  const insertedIds = new Set(inserted.map((row) => row.id));
  // Only ids that were already there can disagree with what we were asked to post: compare those.
  const existing = transfers.filter((transfer) => !insertedIds.has(transfer.id));
  const conflicts = existing.length > 0 ? await compareWithStored(executor, existing) : [];
  return { posted: insertedIds, conflicts };
}

const termsOf = (transfer: { debitAccountId: string; creditAccountId: string; amountFen: Fen }): LedgerTerms => ({
  debitAccountId: transfer.debitAccountId,
  creditAccountId: transfer.creditAccountId,
  amountFen: transfer.amountFen,
  userId: null,
  seq: null,
});

async function compareWithStored(executor: Executor, transfers: readonly Transfer[]): Promise<LedgerConflict[]> {
  const stored = await rowsOf<{ id: string; debit_account_id: string; credit_account_id: string; amount_fen: string | number }>(
    executor,
    sql`select id, debit_account_id, credit_account_id, amount_fen from transfers
        where id = any(${sql.param(transfers.map((transfer) => transfer.id))}::text[])`,
  );
  const byId = new Map(stored.map((row) => [row.id, row]));
  const conflicts: LedgerConflict[] = [];
  for (const transfer of transfers) {
    const row = byId.get(transfer.id);
    // Not inserted yet not there: the insert above cannot have skipped it for any other reason.
    if (row === undefined) throw new InvariantError(`transfer ${transfer.id} was neither inserted nor found`);
    const stored = termsOf({ debitAccountId: row.debit_account_id, creditAccountId: row.credit_account_id, amountFen: Number(row.amount_fen) });
    const code = compareTransferTerms(termsOf(transfer), stored);
    if (code !== null) conflicts.push(newConflict(code, transfer.id, null, termsOf(transfer), stored));
  }
  return conflicts;
}

export async function balanceOf(executor: Executor, accountId: string): Promise<Fen> {
  const rows = await rowsOf<{ balance_fen: string | number }>(
    executor,
    sql`select balance_fen from accounts where id = ${accountId}`,
  );
  return rows.length === 0 ? 0 : Number(rows[0]!.balance_fen);
}
