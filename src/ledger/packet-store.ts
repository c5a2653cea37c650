// Packets in Postgres: sending (the debit and the packet row in one transaction), loading a
// packet with its claims to build an actor, and the deadlines the expiry job looks for.
import { asc, eq, sql } from 'drizzle-orm';
import type { Claim, Packet, PacketType, StoredPacket } from '../domain/packet.js';
import { escrowAccount, sendTransferId, walletAccount } from '../log/events.js';
import type { Fen } from '../money/money.js';
import { rowsOf, type Db, type Executor, type Tx } from './database.js';
import { claims, packets, paymentOrders } from './schema.js';
import type { PaymentPhase } from '../domain/payment.js';
import { postTransfers } from './transfers.js';

export type SendResult = { ok: true } | { ok: false; reason: 'insufficient_balance'; balanceFen: Fen };

/** Debits the sender and stores the live packet, atomically; nothing changes when the balance is short. */
export async function storeSentPacket(tx: Tx, packet: Packet): Promise<SendResult> {
  const wallet = walletAccount(packet.senderId);
  // Row lock: two sends racing on one wallet cannot both pass the check.
  const rows = await rowsOf<{ balance_fen: string | number }>(
    tx,
    sql`select balance_fen from accounts where id = ${wallet} for update`,
  );
  const balanceFen = rows.length === 0 ? 0 : Number(rows[0]!.balance_fen);
  if (balanceFen < packet.totalFen) return { ok: false, reason: 'insufficient_balance', balanceFen };

  await tx.insert(packets).values(packetRow(packet, 'live'));
  await postTransfers(tx, [
    { id: sendTransferId(packet.id), debitAccountId: wallet, creditAccountId: escrowAccount(packet.id), amountFen: packet.totalFen },
  ]);
  return { ok: true };
}

/** The row a new packet is stored as, with its first status (live, or pending_payment through a provider). */
export function packetRow(packet: Packet, status: 'live' | 'pending_payment'): typeof packets.$inferInsert {
  return {
    id: packet.id,
    type: packet.type,
    senderId: packet.senderId,
    targetId: packet.targetId,
    count: packet.count,
    totalFen: packet.totalFen,
    greeting: packet.greeting,
    members: packet.members === null ? null : [...packet.members],
    status,
    createdAt: new Date(packet.createdAtMs),
    liveAt: new Date(packet.liveAtMs),
    expiresAt: new Date(packet.expiresAtMs),
    ...(packet.payment !== undefined ? { payWith: packet.payment.provider, orderId: packet.payment.orderId } : {}),
  };
}

type PacketRow = typeof packets.$inferSelect;
type ClaimRow = typeof claims.$inferSelect;

export function packetFromRow(row: PacketRow): Packet {
  return {
    id: row.id,
    type: row.type as PacketType,
    senderId: row.senderId,
    targetId: row.targetId,
    count: row.count,
    totalFen: row.totalFen,
    greeting: row.greeting,
    members: row.members ?? null,
    createdAtMs: row.createdAt.getTime(),
    liveAtMs: row.liveAt.getTime(),
    expiresAtMs: row.expiresAt.getTime(),
    ...(row.payWith !== 'balance' && row.orderId !== null ? { payment: { provider: row.payWith as 'sandbox', orderId: row.orderId } } : {}),
  };
}

/** A provider-paid packet's phase, from the status the ledger wrote as it applied the log. */
export function phaseOfStatus(status: string): PaymentPhase {
  return status === 'pending_payment' || status === 'awaiting_funds' || status === 'cancelled' ? status : 'funded';
}

export function claimFromRow(row: ClaimRow): Claim {
  return { packetId: row.packetId, seq: row.seq, userId: row.userId, amountFen: row.amountFen, claimedAtMs: row.claimedAt.getTime() };
}

/** The packet and every applied claim, as an actor is built from. */
export async function loadStoredPacket(executor: Executor, packetId: string): Promise<StoredPacket | null> {
  const rows = await executor.select().from(packets).where(eq(packets.id, packetId));
  const row = rows[0];
  if (row === undefined) return null;
  const claimRows = await executor.select().from(claims).where(eq(claims.packetId, packetId)).orderBy(asc(claims.seq));
  const stored: StoredPacket = { packet: packetFromRow(row), claims: claimRows.map(claimFromRow), expired: row.status === 'expired' };
  if (row.payWith === 'balance') return stored;
  // A late credit was made if the order is paid while the packet is cancelled.
  const order = await executor.select({ status: paymentOrders.status }).from(paymentOrders).where(eq(paymentOrders.packetId, packetId));
  const phase = phaseOfStatus(row.status);
  return { ...stored, payment: { phase, lateCredited: phase === 'cancelled' && order[0]?.status === 'paid' } };
}

/** Live packets whose deadline has passed, oldest first. */
export async function duePacketIds(db: Db, nowMs: number, limit: number): Promise<string[]> {
  const rows = await rowsOf<{ id: string }>(
    db,
    sql`select id from packets where status = 'live' and expires_at <= ${new Date(nowMs).toISOString()}::timestamptz
        order by expires_at limit ${limit}`,
  );
  return rows.map((row) => row.id);
}
