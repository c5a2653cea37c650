// Wallet balances: deposits in from the external account, and what a user sees.
import { DEPOSITS_ACCOUNT, depositTransferId, walletAccount } from '../log/events.js';
import { formatFen, MoneyFormatError, type Fen } from '../money/money.js';
import type { Executor } from './database.js';
import { balanceOf, postTransfers } from './transfers.js';

/** Funds a balance (stands in for a bank top-up). `reference` makes it idempotent. */
export async function deposit(executor: Executor, userId: string, amountFen: Fen, reference: string): Promise<Fen> {
  await postTransfers(executor, [
    { id: depositTransferId(reference), debitAccountId: DEPOSITS_ACCOUNT, creditAccountId: walletAccount(userId), amountFen },
  ]);
  const balanceFen = await balanceOf(executor, walletAccount(userId));
  // Past 2^53 fen a balance is no longer an exact number here: refuse (400) and let the caller's transaction roll back.
  if (!Number.isSafeInteger(balanceFen)) {
    throw new MoneyFormatError(`amount out of range: the balance would exceed ${formatFen(Number.MAX_SAFE_INTEGER)}`);
  }
  return balanceFen;
}

export function walletBalance(executor: Executor, userId: string): Promise<Fen> {
  return balanceOf(executor, walletAccount(userId));
}
