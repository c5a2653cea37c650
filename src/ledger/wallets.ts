// Wallet balances: deposits in from the external account, and what a user sees.
import { DEPOSITS_ACCOUNT, depositTransferId, walletAccount } from '../log/events.js';
import { sql } from 'drizzle-orm';
import { formatFen, type Fen } from '../money/money.js';
import { rowsOf, type Executor } from './database.js';
import { balanceOf, postTransfers } from './transfers.js';

/**
 * All the money that ever came in (Σ over the external accounts) stays at or below this. Money
 * only moves between accounts once it is in, so no balance, escrow, pending credit or sum of
 * them can pass it: every amount stays an exact number. A credit or refund can never overflow,
 * because the movement that would is refused where money enters.
 */
export const MONEY_IN_FEN_MAX = Number.MAX_SAFE_INTEGER;

/** A deposit would take the money held past MONEY_IN_FEN_MAX. */
export class MoneyInLimitError extends Error {
  override readonly name = 'MoneyInLimitError';
}

/**
 * Funds a balance (stands in for a bank top-up). `reference` makes it idempotent. Run it in a
 * transaction: past MONEY_IN_FEN_MAX it throws MoneyInLimitError, and the caller rolls back.
 */
export async function deposit(executor: Executor, userId: string, amountFen: Fen, reference: string): Promise<Fen> {
  await postTransfers(executor, [
    { id: depositTransferId(reference), debitAccountId: DEPOSITS_ACCOUNT, creditAccountId: walletAccount(userId), amountFen },
  ]);
  // The deposits account's row is locked by the posting above: concurrent deposits see each other.
  const rows = await rowsOf<{ money_in: string | null }>(
    executor,
    sql`select (-sum(balance_fen))::text as money_in from accounts where kind = 'external'`,
  );
  if (BigInt(rows[0]?.money_in ?? '0') > BigInt(MONEY_IN_FEN_MAX)) {
    throw new MoneyInLimitError(`amount out of range: the money held by all wallets would exceed ${formatFen(MONEY_IN_FEN_MAX)}`);
  }
  return balanceOf(executor, walletAccount(userId));
}

export function walletBalance(executor: Executor, userId: string): Promise<Fen> {
  return balanceOf(executor, walletAccount(userId));
}
