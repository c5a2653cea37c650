// My records (我的红包): per-year totals and paged lists, from the ledger's tables.
// Years are counted in China Standard Time (UTC+8), the calendar the product's users live by.
import { sql } from 'drizzle-orm';
import { statusOf } from '../domain/outcome.js';
import type { Packet, PacketStatus } from '../domain/packet.js';
import type { Fen } from '../money/money.js';
import { rowsOf, type Db } from './database.js';
import { phaseOfStatus } from './packet-store.js';

import { RECORDS_PAGE_SIZE, yearBounds, type Cursor } from './record-cursor.js';

export interface SentPacket {
  readonly packet: Packet;
  readonly status: PacketStatus;
  readonly claimedCount: number;
  readonly claimedFen: Fen;
}

export interface SentRecords {
  readonly count: number;
  readonly totalFen: Fen;
  readonly items: SentPacket[];
  readonly nextCursor: Cursor | null;
}

type PacketRecordRow = {
  id: string; type: Packet['type']; sender_id: string; target_id: string; count: number; total_fen: string | number;
  greeting: string; members: string[] | null; status: string; created_ms: string | number; live_ms: string | number;
  expires_ms: string | number; claimed_count: number; claimed_fen: string | number; pay_with: string; order_id: string | null;
};

export async function sentRecords(db: Db, userId: string, year: number, after: Cursor | null): Promise<SentRecords> {
  const { from, to } = yearBounds(year);
  const totals = await rowsOf<{ count: string | number; total: string | number | null }>(
    db,
    // Totals count money sent: a packet whose payment never came (pending or cancelled) sent none; it is still listed.
    sql`select count(*) as count, sum(total_fen) as total from packets
        where sender_id = ${userId} and created_at >= ${from}::timestamptz and created_at < ${to}::timestamptz
          and status not in ('pending_payment', 'cancelled')`,
  );
  const afterClause = after === null ? sql`true` : sql`(created_at, id) < (${new Date(after.atMs).toISOString()}::timestamptz, ${after.id})`;
  const rows = await rowsOf<PacketRecordRow>(
    db,
    sql`select id, type, sender_id, target_id, count, total_fen, greeting, members, status, claimed_count, claimed_fen, pay_with, order_id,
          (extract(epoch from created_at) * 1000)::bigint as created_ms, (extract(epoch from live_at) * 1000)::bigint as live_ms,
          (extract(epoch from expires_at) * 1000)::bigint as expires_ms
        from packets
        where sender_id = ${userId} and created_at >= ${from}::timestamptz and created_at < ${to}::timestamptz and ${afterClause}
        order by created_at desc, id desc limit ${RECORDS_PAGE_SIZE + 1}`,
  );
  const page = rows.slice(0, RECORDS_PAGE_SIZE);
  const items = page.map((row): SentPacket => {
    const packet: Packet = {
      id: row.id, type: row.type, senderId: row.sender_id, targetId: row.target_id, count: row.count,
      totalFen: Number(row.total_fen), greeting: row.greeting, members: row.members,
      createdAtMs: Number(row.created_ms), liveAtMs: Number(row.live_ms), expiresAtMs: Number(row.expires_ms),
      ...(row.pay_with !== 'balance' && row.order_id !== null ? { payment: { provider: row.pay_with as 'sandbox', orderId: row.order_id } } : {}),
    };
    const status = statusOf(packet, row.claimed_count, row.status === 'expired', phaseOfStatus(row.status));
    return { packet, status, claimedCount: row.claimed_count, claimedFen: Number(row.claimed_fen) };
  });
  const last = items[items.length - 1];
  return {
    count: Number(totals[0]?.count ?? 0),
    totalFen: Number(totals[0]?.total ?? 0),
    items,
    nextCursor: rows.length > RECORDS_PAGE_SIZE && last ? { atMs: last.packet.createdAtMs, id: last.packet.id } : null,
  };
}

export interface ReceivedItem {
  readonly packetId: string;
  readonly senderId: string;
  readonly type: string;
  readonly amountFen: Fen;
  readonly claimedAtMs: number;
  readonly best: boolean;
  /** False while its packet awaits its funds (the money is held). */
  readonly credited: boolean;
}

export interface ReceivedRecords {
  readonly count: number;
  readonly totalFen: Fen;
  readonly bestLuckCount: number;
  readonly items: ReceivedItem[];
  readonly nextCursor: Cursor | null;
}

export async function receivedRecords(db: Db, userId: string, year: number, after: Cursor | null): Promise<ReceivedRecords> {
  const { from, to } = yearBounds(year);
  const totals = await rowsOf<{ count: string | number; total: string | number | null; best: string | number }>(
    db,
    sql`select count(*) as count, sum(c.amount_fen) as total, count(*) filter (where p.best_seq = c.seq) as best
        from claims c join packets p on p.id = c.packet_id
        -- A void claim (its packet's payment failed) received nothing.
        where c.user_id = ${userId} and c.claimed_at >= ${from}::timestamptz and c.claimed_at < ${to}::timestamptz and p.status <> 'cancelled'`,
  );
  const afterClause =
    after === null ? sql`true` : sql`(c.claimed_at, c.packet_id) < (${new Date(after.atMs).toISOString()}::timestamptz, ${after.id})`;
  const rows = await rowsOf<{ packet_id: string; sender_id: string; type: string; amount_fen: string | number; claimed_ms: string | number; best: boolean; credited: boolean }>(
    db,
    sql`select c.packet_id, p.sender_id, p.type, c.amount_fen, (extract(epoch from c.claimed_at) * 1000)::bigint as claimed_ms,
          coalesce(p.best_seq = c.seq, false) as best, c.credited
        from claims c join packets p on p.id = c.packet_id
        -- A void claim (its packet's payment failed) received nothing.
        where c.user_id = ${userId} and c.claimed_at >= ${from}::timestamptz and c.claimed_at < ${to}::timestamptz and p.status <> 'cancelled' and ${afterClause}
        order by c.claimed_at desc, c.packet_id desc limit ${RECORDS_PAGE_SIZE + 1}`,
  );
  const items = rows.slice(0, RECORDS_PAGE_SIZE).map((row) => ({
    packetId: row.packet_id, senderId: row.sender_id, type: row.type, amountFen: Number(row.amount_fen),
    claimedAtMs: Number(row.claimed_ms), best: row.best, credited: row.credited,
  }));
  const last = items[items.length - 1];
  return {
    count: Number(totals[0]?.count ?? 0),
    totalFen: Number(totals[0]?.total ?? 0),
    bestLuckCount: Number(totals[0]?.best ?? 0),
    items,
    nextCursor: rows.length > RECORDS_PAGE_SIZE && last ? { atMs: last.claimedAtMs, id: last.packetId } : null,
  };
}
