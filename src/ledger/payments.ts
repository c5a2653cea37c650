// Provider-paid packets in the ledger (API.md, Payments through a provider): storing one with
// its order, applying its payment events from the log, the second sweep, what a user holds but
// has not been credited, the orders the timeout job must ask about, and notification nonces.
//
// Money: nothing moves at send. `fund:<packet>` moves the total from the provider's clearing
// account into escrow, and in the same transaction every held claim of the packet is credited
// (`claim:<packet>:<seq>`, as for any claim). A cancelled packet's held claims stay uncredited
// (void). Money that arrives for a cancelled packet goes to its sender: `late:<order>`.
import { sql } from 'drizzle-orm';
import type { Packet } from '../domain/packet.js';
import {
  claimTransferId,
  escrowAccount,
  fundTransferId,
  lateCreditTransferId,
  providerAccount,
  walletAccount,
  type PaymentEvent,
} from '../log/events.js';
import type { Fen } from '../money/money.js';
import type { LedgerConflict } from './conflicts.js';
import { rowsOf, type Executor, type Tx } from './database.js';
import { packetRow } from './packet-store.js';
import { packets, paymentOrders } from './schema.js';
import { postTransfersComparing, type Transfer } from './transfers.js';

/** The order a provider-paid packet was sent with: what its sender needs to pay it. */
export interface PacketOrder {
  readonly orderId: string;
  readonly provider: string;
  readonly amountFen: Fen;
  readonly payToken: string;
  readonly expiresAtMs: number;
}

const at = (ms: number) => new Date(ms).toISOString();

/** Stores a provider-paid packet, pending its payment, with its order. Nothing is debited. */
export async function storeProviderPacket(tx: Tx, packet: Packet, order: PacketOrder): Promise<void> {
  await tx.insert(packets).values({ ...packetRow(packet, 'pending_payment'), payWith: order.provider, orderId: order.orderId });
  await tx.insert(paymentOrders).values({
    orderId: order.orderId,
    provider: order.provider,
    packetId: packet.id,
    amountFen: order.amountFen,
    payToken: order.payToken,
    expiresAt: new Date(order.expiresAtMs),
  });
  // The clearing account exists before the first funding: a batch that funds locks it with the
  // other accounts it touches, in one order (ledger-consumer.ts, applyBatch).
  await tx.execute(sql`insert into accounts (id, kind, balance_fen) values (${providerAccount(order.provider)}, 'provider', 0) on conflict (id) do nothing`);
}

/** Every account a batch of payment events may touch besides held claims' wallets (for the lock order). */
export function paymentAccounts(events: readonly PaymentEvent[]): string[] {
  const accounts: string[] = [];
  for (const event of events) {
    if (event.change === 'funded') accounts.push(providerAccount(event.provider), escrowAccount(event.packetId));
    if (event.change === 'late_credit') accounts.push(providerAccount(event.provider), walletAccount(event.senderId));
  }
  return accounts;
}

/** The held (uncredited) claims of these packets: their wallets join the batch's lock set. */
export async function heldClaimsOf(executor: Executor, packetIds: readonly string[]): Promise<{ packetId: string; seq: number; userId: string; amountFen: Fen }[]> {
  if (packetIds.length === 0) return [];
  const rows = await rowsOf<{ packet_id: string; seq: number; user_id: string; amount_fen: string | number }>(
    executor,
    sql`select packet_id, seq, user_id, amount_fen from claims
        where packet_id = any(${sql.param([...packetIds])}::text[]) and not credited order by packet_id, seq`,
  );
  return rows.map((row) => ({ packetId: row.packet_id, seq: row.seq, userId: row.user_id, amountFen: Number(row.amount_fen) }));
}

/**
 * Applies a batch's payment events in log order, after its claims (so the held claims decided
 * before a funding are already booked when it credits them). Returns the conflicts met: a fund
 * or late-credit id that exists with other terms moves nothing.
 */
export async function applyPayments(tx: Tx, events: readonly PaymentEvent[]): Promise<LedgerConflict[]> {
  const conflicts: LedgerConflict[] = [];
  for (const event of events) {
    switch (event.change) {
      case 'awaiting_funds':
        await tx.execute(sql`
          update packets set status = 'awaiting_funds', live_at = ${at(event.liveAtMs)}::timestamptz, expires_at = ${at(event.expiresAtMs)}::timestamptz
          where id = ${event.packetId} and status = 'pending_payment'`);
        break;
      case 'funded':
        conflicts.push(...(await fund(tx, event)));
        break;
      case 'cancelled':
        await tx.execute(sql`update packets set status = 'cancelled' where id = ${event.packetId} and status in ('pending_payment', 'awaiting_funds')`);
        await tx.execute(sql`update payment_orders set status = 'cancelled' where order_id = ${event.orderId} and status = 'created'`);
        break;
      case 'late_credit': {
        const posting = await postTransfersComparing(tx, [
          { id: lateCreditTransferId(event.orderId), debitAccountId: providerAccount(event.provider), creditAccountId: walletAccount(event.senderId), amountFen: event.amountFen },
        ]);
        conflicts.push(...posting.conflicts.map((conflict) => ({ ...conflict, packetId: event.packetId })));
        if (posting.conflicts.length === 0) {
          await tx.execute(sql`update payment_orders set status = 'paid', paid_at = ${at(event.atMs)}::timestamptz where order_id = ${event.orderId}`);
        }
        break;
      }
    }
  }
  return conflicts;
}

/** The funds are in: escrow gets the total, every held claim is credited, the packet is live (or finished). */
async function fund(tx: Tx, event: PaymentEvent): Promise<LedgerConflict[]> {
  const posting = await postTransfersComparing(tx, [
    { id: fundTransferId(event.packetId), debitAccountId: providerAccount(event.provider), creditAccountId: escrowAccount(event.packetId), amountFen: event.amountFen },
  ]);
  if (posting.conflicts.length > 0) return posting.conflicts.map((conflict) => ({ ...conflict, packetId: event.packetId }));
  const credited = await creditHeldClaims(tx, [event.packetId]);
  await tx.execute(sql`update payment_orders set status = 'paid', paid_at = ${at(event.atMs)}::timestamptz where order_id = ${event.orderId}`);
  // Opened out while it waited for its money: it finishes the moment the money is there.
  await tx.execute(sql`
    update packets set
      status = case when claimed_count >= count then 'finished' else 'live' end,
      live_at = ${at(event.liveAtMs)}::timestamptz, expires_at = ${at(event.expiresAtMs)}::timestamptz,
      funded_at = ${at(event.atMs)}::timestamptz,
      finished_at = case when claimed_count >= count
                         then (select max(claimed_at) from claims c where c.packet_id = packets.id) else null end,
      best_seq = case when claimed_count >= count and type = 'group_lucky'
                      then (select seq from claims best where best.packet_id = packets.id order by best.amount_fen desc, best.seq asc limit 1)
                      else best_seq end
    where id = ${event.packetId} and status in ('pending_payment', 'awaiting_funds')`);
  return credited.conflicts;
}

/**
 * Credits every held claim of these packets (escrow → the opener's wallet, under the claim's own
 * transfer id, so crediting twice moves nothing) and marks them credited. Returns how many.
 */
export async function creditHeldClaims(tx: Tx, packetIds: readonly string[]): Promise<{ credited: number; conflicts: LedgerConflict[] }> {
  const held = await heldClaimsOf(tx, packetIds);
  if (held.length === 0) return { credited: 0, conflicts: [] };
  const transfers: Transfer[] = held.map((claim) => ({
    id: claimTransferId(claim.packetId, claim.seq),
    debitAccountId: escrowAccount(claim.packetId),
    creditAccountId: walletAccount(claim.userId),
    amountFen: claim.amountFen,
  }));
  const posting = await postTransfersComparing(tx, transfers);
  const conflicted = new Set(posting.conflicts.map((conflict) => conflict.transferId));
  const done = held.filter((claim) => !conflicted.has(claimTransferId(claim.packetId, claim.seq)));
  if (done.length > 0) {
    await tx.execute(sql`
      update claims set credited = true
      from unnest(${sql.param(done.map((claim) => claim.packetId))}::text[], ${sql.param(done.map((claim) => claim.seq))}::int[]) as input(packet_id, seq)
      where claims.packet_id = input.packet_id and claims.seq = input.seq`);
  }
  const packetOf = new Map(held.map((claim) => [claimTransferId(claim.packetId, claim.seq), claim.packetId]));
  return { credited: done.length, conflicts: posting.conflicts.map((conflict) => ({ ...conflict, packetId: packetOf.get(conflict.transferId) ?? null })) };
}

/** How many packets one pass of the second sweep takes. */
export const RESWEEP_BATCH_MAX = 500;

/**
 * The second sweep: for packets funded at least `cutoffMs` ago and not swept again yet, credits
 * any claim still held (one booked after the funding's own sweep), then marks them swept.
 * Returns how many claims it credited: 0 unless something was in flight at the funding.
 */
export async function resweep(tx: Tx, cutoffMs: number): Promise<{ packets: number; credited: number; conflicts: LedgerConflict[] }> {
  const due = await rowsOf<{ id: string }>(
    tx,
    sql`select id from packets where funded_at is not null and reswept_at is null and funded_at <= ${at(cutoffMs)}::timestamptz
        order by funded_at limit ${RESWEEP_BATCH_MAX} for update skip locked`,
  );
  if (due.length === 0) return { packets: 0, credited: 0, conflicts: [] };
  const ids = due.map((row) => row.id);
  const { credited, conflicts } = await creditHeldClaims(tx, ids);
  await tx.execute(sql`update packets set reswept_at = now() where id = any(${sql.param(ids)}::text[])`);
  return { packets: ids.length, credited, conflicts };
}

/** What a user has been given but not credited: claims held for packets awaiting their funds (void ones excluded). */
export async function heldFen(executor: Executor, userId: string): Promise<Fen> {
  const rows = await rowsOf<{ held: string | null }>(
    executor,
    sql`select sum(c.amount_fen)::text as held from claims c join packets p on p.id = c.packet_id
        where c.user_id = ${userId} and not c.credited and p.status = 'awaiting_funds'`,
  );
  return Number(rows[0]?.held ?? 0);
}

/** Which of these claims (by transfer id `claim:<packet>:<seq>`) the ledger has booked, held or credited. */
export async function bookedClaims(executor: Executor, transferIds: readonly string[]): Promise<string[]> {
  const keys = transferIds.map((id) => /^claim:(.+):(\d+)$/.exec(id)).filter((match): match is RegExpExecArray => match !== null);
  if (keys.length === 0) return [];
  const rows = await rowsOf<{ packet_id: string; seq: number }>(
    executor,
    sql`select c.packet_id, c.seq from unnest(${sql.param(keys.map((key) => key[1]!))}::text[], ${sql.param(keys.map((key) => Number(key[2])))}::int[]) as input(packet_id, seq)
        join claims c on c.packet_id = input.packet_id and c.seq = input.seq`,
  );
  return rows.map((row) => claimTransferId(row.packet_id, row.seq));
}

export interface DuePayment {
  readonly packetId: string;
  readonly orderId: string;
  readonly provider: string;
}

/** Provider-paid packets still unconfirmed that were sent at or before `cutoffMs`, oldest first. */
export async function duePayments(executor: Executor, cutoffMs: number, limit: number): Promise<DuePayment[]> {
  const rows = await rowsOf<{ id: string; order_id: string; pay_with: string }>(
    executor,
    sql`select id, order_id, pay_with from packets
        where status in ('pending_payment', 'awaiting_funds') and created_at <= ${at(cutoffMs)}::timestamptz
        order by created_at limit ${limit}`,
  );
  return rows.map((row) => ({ packetId: row.id, orderId: row.order_id, provider: row.pay_with }));
}

/** The provider closed this order (it can no longer be paid). */
export async function markOrderClosed(executor: Executor, orderId: string, atMs: number): Promise<void> {
  await executor.execute(sql`update payment_orders set closed_at = coalesce(closed_at, ${at(atMs)}::timestamptz) where order_id = ${orderId}`);
}

/** The order a packet was sent with, or null. */
export async function orderOf(executor: Executor, packetId: string): Promise<PacketOrder | null> {
  const rows = await rowsOf<{ order_id: string; provider: string; amount_fen: string | number; pay_token: string; expires_ms: string | number }>(
    executor,
    sql`select order_id, provider, amount_fen, pay_token, (extract(epoch from expires_at) * 1000)::bigint as expires_ms
        from payment_orders where packet_id = ${packetId}`,
  );
  const row = rows[0];
  if (row === undefined) return null;
  return { orderId: row.order_id, provider: row.provider, amountFen: Number(row.amount_fen), payToken: row.pay_token, expiresAtMs: Number(row.expires_ms) };
}

/**
 * Remembers a notification's nonce; false if it was seen before (a replay). Keyed by the signed
 * timestamp: nonces older than `keepMs` are dropped, since a notification that old is refused by
 * its timestamp anyway, so the store stays bounded by the window's traffic.
 */
export async function rememberNonce(tx: Tx, provider: string, nonce: string, timestampMs: number, nowMs: number, keepMs: number): Promise<boolean> {
  await tx.execute(sql`delete from payment_nonces where seen_at < ${at(nowMs - keepMs)}::timestamptz`);
  const inserted = await rowsOf<{ nonce: string }>(
    tx,
    sql`insert into payment_nonces (provider, nonce, seen_at) values (${provider}, ${nonce}, ${at(timestampMs)}::timestamptz)
        on conflict do nothing returning nonce`,
  );
  return inserted.length === 1;
}
