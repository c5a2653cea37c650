// Claims that are decided but not yet credited by the ledger consumer (入账异步): shown as
// `pending` in the wallet. Kept in memory: after a restart the consumer catches up within
// moments, so at worst a claim shows in neither field for that short while, never in both.
import type { Fen } from '../money/money.js';

export class PendingCredits {
  private readonly byUser = new Map<string, Map<string, Fen>>();

  add(userId: string, transferId: string, amountFen: Fen): void {
    let mine = this.byUser.get(userId);
    if (mine === undefined) this.byUser.set(userId, (mine = new Map()));
    mine.set(transferId, amountFen);
  }

  settle(userId: string, transferId: string): void {
    const mine = this.byUser.get(userId);
    if (mine === undefined) return;
    mine.delete(transferId);
    if (mine.size === 0) this.byUser.delete(userId);
  }

  pendingFen(userId: string): Fen {
    let sum = 0;
    for (const amount of this.byUser.get(userId)?.values() ?? []) sum += amount;
    return sum;
  }
}
