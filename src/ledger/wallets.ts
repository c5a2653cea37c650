// Wallet balances: deposits in from the external account, and what a user sees.
import { DEPOSITS_ACCOUNT, depositTransferId, walletAccount } from '../log/events.js';
import type { Fen } from '../money/money.js';
import type { Executor } from './database.js';
import { balanceOf, postTransfers } from './transfers.js';

/** Funds a balance (stands in for a bank top-up). `reference` makes it idempotent. */
export async function deposit(executor: Executor, userId: string, amountFen: Fen, reference: string): Promise<Fen> {
  await postTransfers(executor, [
    { id: depositTransferId(reference), debitAccountId: DEPOSITS_ACCOUNT, creditAccountId: walletAccount(userId), amountFen },
  ]);
  return balanceOf(executor, walletAccount(userId));
}

export function walletBalance(executor: Executor, userId: string): Promise<Fen> {
  return balanceOf(executor, walletAccount(userId));
}
