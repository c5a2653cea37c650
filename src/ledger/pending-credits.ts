// Claims that are decided but not yet credited by the ledger consumer (入账异步): shown as
// `pending` in the wallet. Kept in memory: after a restart the consumer catches up within
// moments, so at worst a claim shows in neither field for that short while, never in both.
// A claim leaves when the ledger has booked it: told at once by this process's consumer, or,
// on a node without one (ROLE=engine), found booked when its opener's wallet is read and by a
// periodic check (bookedClaims), so the map never outgrows what the ledger has yet to book.
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

  /** The transfer ids pending for one user. */
  idsOf(userId: string): string[] {
    return [...(this.byUser.get(userId)?.keys() ?? [])];
  }

  /** Up to `limit` pending claims of any user, oldest users first. */
  some(limit: number): { userId: string; transferId: string }[] {
    const found: { userId: string; transferId: string }[] = [];
    for (const [userId, mine] of this.byUser) {
      for (const transferId of mine.keys()) {
        if (found.length >= limit) return found;
        found.push({ userId, transferId });
      }
    }
    return found;
  }

  get size(): number {
    let count = 0;
    for (const mine of this.byUser.values()) count += mine.size;
    return count;
  }
}
