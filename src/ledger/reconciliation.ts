// 对账: proves the books. Every closed packet: Σ claims + refund = total and its escrow is 0;
// every live packet: escrow = total − Σ claims; every account: balance = Σ its transfers;
// the whole book: Σ balances = 0.
import { sql } from 'drizzle-orm';
import { rowsOf, type Db } from './database.js';

export interface Discrepancy {
  readonly kind: 'packet' | 'account' | 'book';
  readonly id: string;
  readonly message: string;
}

export interface ReconciliationReport {
  readonly checkedPackets: number;
  readonly checkedAccounts: number;
  readonly discrepancies: Discrepancy[];
}

const num = (value: string | number | null) => Number(value ?? 0);

export async function reconcile(db: Db): Promise<ReconciliationReport> {
  return db.transaction(async (tx) => {
    // One snapshot for all three checks, so a batch committing meanwhile cannot show as a gap.
    await tx.execute(sql`set transaction isolation level repeatable read`);
    const discrepancies: Discrepancy[] = [];

    const packetRows = await rowsOf<{
      id: string; status: string; total_fen: string | number; claimed_fen: string | number | null;
      refund_fen: string | number | null; escrow_fen: string | number | null; sent_fen: string | number | null;
    }>(
      tx,
      sql`select p.id, p.status, p.total_fen, p.refund_fen,
            (select sum(amount_fen) from claims c where c.packet_id = p.id) as claimed_fen,
            (select balance_fen from accounts a where a.id = 'escrow:' || p.id) as escrow_fen,
            (select amount_fen from transfers t where t.id = 'send:' || p.id) as sent_fen
          from packets p`,
    );
    for (const row of packetRows) {
      const total = num(row.total_fen);
      const claimed = num(row.claimed_fen);
      const refund = num(row.refund_fen);
      const escrow = num(row.escrow_fen);
      if (num(row.sent_fen) !== total) discrepancies.push({ kind: 'packet', id: row.id, message: `sent ${num(row.sent_fen)} ≠ total ${total}` });
      if (row.status === 'live') {
        if (escrow !== total - claimed) discrepancies.push({ kind: 'packet', id: row.id, message: `escrow ${escrow} ≠ total ${total} − claims ${claimed}` });
      } else if (claimed + refund !== total || escrow !== 0) {
        discrepancies.push({ kind: 'packet', id: row.id, message: `claims ${claimed} + refund ${refund} ≠ total ${total} or escrow ${escrow} ≠ 0` });
      }
    }

    const accountRows = await rowsOf<{ id: string; balance_fen: string | number; posted_fen: string | number | null }>(
      tx,
      sql`select a.id, a.balance_fen,
            coalesce((select sum(amount_fen) from transfers where credit_account_id = a.id), 0)
          - coalesce((select sum(amount_fen) from transfers where debit_account_id = a.id), 0) as posted_fen
          from accounts a`,
    );
    let book = 0;
    for (const row of accountRows) {
      book += num(row.balance_fen);
      if (num(row.balance_fen) !== num(row.posted_fen)) {
        discrepancies.push({ kind: 'account', id: row.id, message: `balance ${num(row.balance_fen)} ≠ Σ transfers ${num(row.posted_fen)}` });
      }
    }
    if (book !== 0) discrepancies.push({ kind: 'book', id: 'all', message: `Σ balances is ${book}, not 0` });
    return { checkedPackets: packetRows.length, checkedAccounts: accountRows.length, discrepancies };
  });
}
