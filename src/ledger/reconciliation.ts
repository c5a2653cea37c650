// 对账: proves the books. Every closed packet: Σ claims + refund = total and its escrow is 0;
// every live packet: escrow = total − Σ claims; every account: balance = Σ its transfers;
// the whole book: Σ balances = 0. Every recorded conflict is a discrepancy until resolved.
// And the log is held against the ledger: every claim the log holds up to the consumer's
// stored position is booked with the same terms and has its transfer.
// Sums are bigint (and read as text): Σ over many accounts can pass 2^53 fen.
import { eq, sql } from 'drizzle-orm';
import type { EventLog, LogPosition } from '../log/event-log.js';
import { claimTransferId, escrowAccount, walletAccount, type ClaimEvent, type PacketEvent } from '../log/events.js';
import { conflictIdOfEvent, loadConflicts } from './conflicts.js';
import { rowsOf, type Db, type Tx } from './database.js';
import { logPositions } from './schema.js';

export interface Discrepancy {
  readonly kind: 'packet' | 'account' | 'book' | 'conflict' | 'log';
  readonly id: string;
  readonly message: string;
}

export interface ReconciliationReport {
  readonly checkedPackets: number;
  readonly checkedAccounts: number;
  /** Claim events read from the log up to the consumer's stored positions. */
  readonly checkedLogClaims: number;
  readonly discrepancies: Discrepancy[];
}

type Amount = string | number | null;
const fen = (value: Amount) => BigInt(value ?? 0);

export async function reconcile(db: Db, log: EventLog): Promise<ReconciliationReport> {
  const discrepancies: Discrepancy[] = [];
  const { checkedPackets, checkedAccounts } = await db.transaction(async (tx) => {
    // One snapshot for the book checks, so a batch committing meanwhile cannot show as a gap.
    await tx.execute(sql`set transaction isolation level repeatable read`);
    const checkedPackets = await checkPackets(tx, discrepancies);
    await checkProviders(tx, discrepancies);
    return { checkedPackets, checkedAccounts: await checkAccounts(tx, discrepancies) };
  });
  // The log check needs no snapshot, and must not hold one: the table log reads through the
  // database handle, which an open transaction would block on PGlite. It reads the stored
  // positions first; what the ledger applied before them (claims and conflicts alike) committed
  // with them and is never deleted, so every later read sees it.
  const until = await storedPositions(db, log);
  const conflicts = await loadConflicts(db);
  for (const conflict of conflicts) discrepancies.push({ kind: 'conflict', id: conflict.id, message: conflict.message });
  const checkedLogClaims = await checkLog(db, log, until, new Set(conflicts.map((conflict) => conflict.id)), discrepancies);
  return { checkedPackets, checkedAccounts, checkedLogClaims, discrepancies };
}

async function storedPositions(db: Db, log: EventLog): Promise<LogPosition[]> {
  const stored = await db.select().from(logPositions).where(eq(logPositions.log, log.name));
  return stored.map((row) => ({ partition: row.partition, nextOffset: row.nextOffset.toString() }));
}

interface PacketRow {
  id: string;
  status: string;
  pay_with: string;
  total_fen: Amount;
  credited_fen: Amount;
  held_fen: Amount;
  refund_fen: Amount;
  escrow_fen: Amount;
  sent_fen: Amount;
  funded_fen: Amount;
  late_fen: Amount;
}

async function checkPackets(tx: Tx, discrepancies: Discrepancy[]): Promise<number> {
  const rows = await rowsOf<PacketRow>(
    tx,
    sql`select p.id, p.status, p.pay_with, p.total_fen::text as total_fen, p.refund_fen::text as refund_fen,
          (select sum(amount_fen)::text from claims c where c.packet_id = p.id and c.credited) as credited_fen,
          (select sum(amount_fen)::text from claims c where c.packet_id = p.id and not c.credited) as held_fen,
          (select balance_fen::text from accounts a where a.id = 'escrow:' || p.id) as escrow_fen,
          (select amount_fen::text from transfers t where t.id = 'send:' || p.id) as sent_fen,
          (select amount_fen::text from transfers t where t.id = 'fund:' || p.id) as funded_fen,
          (select amount_fen::text from transfers t where t.id = 'late:' || p.order_id) as late_fen
        from packets p`,
  );
  for (const row of rows) {
    for (const problem of packetProblems(row)) discrepancies.push({ kind: 'packet', id: row.id, message: problem });
  }
  return rows.length;
}

/**
 * One packet's books. Money in: `send:` from the balance, or `fund:` from a provider (never
 * both). Until a provider-paid packet is funded nothing moved: no escrow, no credited claim;
 * a cancelled one moved nothing but, if its money came late, the late credit of its total.
 * Once in: escrow = in − credited claims while live; credited + refund = in once closed; and
 * no claim is left held.
 */
function packetProblems(row: PacketRow): string[] {
  const problems: string[] = [];
  const total = fen(row.total_fen);
  const credited = fen(row.credited_fen);
  const held = fen(row.held_fen);
  const refund = fen(row.refund_fen);
  const escrow = fen(row.escrow_fen);
  const sent = fen(row.sent_fen);
  const funded = fen(row.funded_fen);
  const late = fen(row.late_fen);
  const viaProvider = row.pay_with !== 'balance';
  const moneyIn = viaProvider ? funded : sent;
  if (viaProvider && sent !== 0n) problems.push(`paid through ${row.pay_with}, yet debited ${sent} from the balance`);
  if (!viaProvider && funded !== 0n) problems.push(`paid from the balance, yet funded ${funded} by a provider`);
  if (late !== 0n && (row.status !== 'cancelled' || late !== total)) problems.push(`late credit ${late} on a ${row.status} packet of total ${total}`);
  const unfunded = row.status === 'pending_payment' || row.status === 'awaiting_funds' || row.status === 'cancelled';
  if (unfunded) {
    if (moneyIn !== 0n || credited !== 0n || escrow !== 0n) {
      problems.push(`${row.status}: moved money (in ${moneyIn}, credited ${credited}, escrow ${escrow}) before its funds were confirmed`);
    }
    if (row.status === 'pending_payment' && held !== 0n) problems.push(`pending_payment with ${held} of claims`);
    return problems;
  }
  if (moneyIn !== total) problems.push(`money in ${moneyIn} ≠ total ${total}`);
  if (held !== 0n) problems.push(`${row.status} with ${held} of claims still held`);
  if (row.status === 'live') {
    if (escrow !== total - credited) problems.push(`escrow ${escrow} ≠ total ${total} − claims ${credited}`);
  } else if (credited + refund !== total || escrow !== 0n) {
    problems.push(`claims ${credited} + refund ${refund} ≠ total ${total} or escrow ${escrow} ≠ 0`);
  }
  return problems;
}

/**
 * Each provider's clearing account against its orders: it paid in exactly the paid orders'
 * amounts (balance = −Σ paid), and each paid order moved its money exactly once, into its
 * packet's escrow (`fund:`) or, for a cancelled packet, to its sender (`late:`).
 */
async function checkProviders(tx: Tx, discrepancies: Discrepancy[]): Promise<void> {
  const accounts = await rowsOf<{ id: string; provider: string; balance_fen: Amount; paid_fen: Amount }>(
    tx,
    sql`select a.id, substr(a.id, length('provider:') + 1) as provider, a.balance_fen::text as balance_fen,
          (select sum(o.amount_fen)::text from payment_orders o where o.provider = substr(a.id, length('provider:') + 1) and o.status = 'paid') as paid_fen
        from accounts a where a.kind = 'provider'`,
  );
  for (const account of accounts) {
    const paid = fen(account.paid_fen);
    if (fen(account.balance_fen) !== -paid) {
      discrepancies.push({ kind: 'account', id: account.id, message: `balance ${account.balance_fen} ≠ −Σ paid orders ${paid}` });
    }
  }
  const orders = await rowsOf<{ order_id: string; status: string; amount_fen: Amount; moved: number; moved_fen: Amount }>(
    tx,
    sql`select o.order_id, o.status, o.amount_fen::text as amount_fen,
          (select count(*)::int from transfers t where t.id in ('fund:' || o.packet_id, 'late:' || o.order_id)) as moved,
          (select sum(t.amount_fen)::text from transfers t where t.id in ('fund:' || o.packet_id, 'late:' || o.order_id)) as moved_fen
        from payment_orders o`,
  );
  for (const order of orders) {
    const expectedMoves = order.status === 'paid' ? 1 : 0;
    const movedFen = fen(order.moved_fen);
    if (order.moved !== expectedMoves || (expectedMoves === 1 && movedFen !== fen(order.amount_fen))) {
      discrepancies.push({ kind: 'account', id: `order:${order.order_id}`, message: `${order.status} order moved ${order.moved} time(s), ${movedFen} fen (order of ${order.amount_fen})` });
    }
  }
}

async function checkAccounts(tx: Tx, discrepancies: Discrepancy[]): Promise<number> {
  const rows = await rowsOf<{ id: string; balance_fen: Amount; posted_fen: Amount }>(
    tx,
    sql`select a.id, a.balance_fen::text as balance_fen,
          (coalesce((select sum(amount_fen) from transfers where credit_account_id = a.id), 0)
         - coalesce((select sum(amount_fen) from transfers where debit_account_id = a.id), 0))::text as posted_fen
        from accounts a`,
  );
  let book = 0n;
  for (const row of rows) {
    const balance = fen(row.balance_fen);
    const posted = fen(row.posted_fen);
    book += balance;
    if (balance !== posted) discrepancies.push({ kind: 'account', id: row.id, message: `balance ${balance} ≠ Σ transfers ${posted}` });
  }
  if (book !== 0n) discrepancies.push({ kind: 'book', id: 'all', message: `Σ balances is ${book}, not 0` });
  return rows.length;
}

/**
 * Every claim in the log before the consumer's stored positions must be booked: its claim row
 * with the same user and amount, and its transfer escrow → wallet. A claim recorded as a
 * conflict is already reported as one. Reads the log batch by batch (bounded memory). On Kafka
 * the check covers what retention kept: records already deleted cannot be held against the ledger.
 */
async function checkLog(
  db: Db,
  log: EventLog,
  until: readonly LogPosition[],
  recordedConflicts: ReadonlySet<string>,
  discrepancies: Discrepancy[],
): Promise<number> {
  let checked = 0;
  /** A claim event met again in the log (a producer retry) is checked once. */
  const seen = new Set<string>();
  await log.scan(until, async (events: readonly PacketEvent[]) => {
    const claims = events.filter((event): event is ClaimEvent => event.kind === 'claim');
    checked += claims.length;
    const fresh: ClaimEvent[] = [];
    for (const event of claims) {
      const key = conflictIdOfEvent(event);
      if (seen.has(key) || recordedConflicts.has(key)) continue;
      seen.add(key);
      fresh.push(event);
    }
    if (fresh.length > 0) await checkBooked(db, fresh, discrepancies);
  });
  return checked;
}

async function checkBooked(db: Db, events: readonly ClaimEvent[], discrepancies: Discrepancy[]): Promise<void> {
  const rows = await rowsOf<{ user_id: string | null; amount_fen: Amount; credited: boolean | null; debit_account_id: string | null; credit_account_id: string | null; transfer_fen: Amount }>(
    db,
    sql`select c.user_id, c.amount_fen::text as amount_fen, c.credited, t.debit_account_id, t.credit_account_id, t.amount_fen::text as transfer_fen
        from unnest(${sql.param(events.map((event) => event.packetId))}::text[],
                    ${sql.param(events.map((event) => event.seq))}::int[],
                    ${sql.param(events.map((event) => claimTransferId(event.packetId, event.seq)))}::text[])
             with ordinality as input(packet_id, seq, transfer_id, position)
        left join claims c on c.packet_id = input.packet_id and c.seq = input.seq
        left join transfers t on t.id = input.transfer_id
        order by input.position`,
  );
  events.forEach((event, index) => {
    const row = rows[index];
    const id = claimTransferId(event.packetId, event.seq);
    const asked = `user ${event.userId} ${event.amountFen} fen`;
    if (row === undefined || row.user_id === null) {
      discrepancies.push({ kind: 'log', id, message: `${id}: in the log (${asked}) but not booked` });
    } else if (row.user_id !== event.userId || fen(row.amount_fen) !== BigInt(event.amountFen)) {
      discrepancies.push({ kind: 'log', id, message: `${id}: the log says ${asked}, the ledger booked user ${row.user_id} ${row.amount_fen} fen` });
    } else if (row.credited === false) {
      // Held for a packet not funded (the packet check says whether that may be): no transfer yet, rightly.
      if (row.debit_account_id !== null) discrepancies.push({ kind: 'log', id, message: `${id}: held, yet it has a transfer` });
    } else if (
      row.debit_account_id !== escrowAccount(event.packetId) ||
      row.credit_account_id !== walletAccount(event.userId) ||
      fen(row.transfer_fen) !== BigInt(event.amountFen)
    ) {
      discrepancies.push({ kind: 'log', id, message: `${id}: booked, but its transfer is ${row.debit_account_id ?? 'missing'} → ${row.credit_account_id ?? 'missing'} ${row.transfer_fen ?? 0} fen` });
    }
  });
}
