// The ledger consumer (入账异步): reads the event log and applies each batch in ONE
// transaction with bulk statements, storing the log position in that same transaction.
// A crash neither skips nor doubles anything: the position and the effects commit together,
// and every effect is keyed by its transfer id, so a replayed event changes nothing.
import { eq, sql } from 'drizzle-orm';
import { UnavailableError } from '../domain/errors.js';
import { compareOffsets, type EventLog, type LogBatch, type LogPosition, type Subscription } from '../log/event-log.js';
import type { ClaimEvent, ExpireEvent } from '../log/events.js';
import { claimTransferId, escrowAccount, refundTransferId, walletAccount } from '../log/events.js';
import { rowsOf, type Db, type Tx } from './database.js';
import { logPositions } from './schema.js';
import { postTransfers, type Transfer } from './transfers.js';

export interface AppliedBatch {
  readonly claims: readonly ClaimEvent[];
  readonly expiries: readonly ExpireEvent[];
}

export interface ConsumerOptions {
  /** Called after each committed batch (pending credits, metrics). */
  readonly onApplied?: (batch: AppliedBatch) => void;
  readonly onError?: (error: unknown) => void;
}

/** How often a waiter re-reads the stored positions, for a consumer running in another process. */
const STORED_POSITION_POLL_MS = 100;

interface Waiter {
  readonly position: LogPosition;
  readonly resolve: () => void;
}

export class LedgerConsumer {
  private readonly applied = new Map<number, string>();
  private waiters: Waiter[] = [];
  private subscription: Subscription | undefined;
  appliedEvents = 0;
  failedBatches = 0;

  constructor(
    private readonly db: Db,
    private readonly log: EventLog,
    private readonly options: ConsumerOptions = {},
  ) {}

  async start(): Promise<void> {
    const stored = await this.db.select().from(logPositions).where(eq(logPositions.log, this.log.name));
    const from = stored.map((row) => ({ partition: row.partition, nextOffset: row.nextOffset.toString() }));
    for (const position of from) this.advance(position);
    this.subscription = await this.log.subscribe(from, (batch) => this.handle(batch));
  }

  async stop(): Promise<void> {
    await this.subscription?.stop();
    this.subscription = undefined;
  }

  /**
   * Resolves once the ledger has applied the partition up to `position` (exclusive).
   * Learns of progress from this process's consumer at once, and from the stored positions
   * (another process's consumer) by polling.
   */
  async waitApplied(position: LogPosition, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.reached(position)) {
      if (Date.now() >= deadline) {
        throw new UnavailableError(`the ledger has not caught up with the log yet (partition ${position.partition} at ${this.appliedPosition(position.partition)}, need ${position.nextOffset})`);
      }
      await new Promise<void>((resolve) => {
        const waiter: Waiter = { position, resolve: () => { clearTimeout(timer); resolve(); } };
        const timer = setTimeout(() => {
          this.waiters = this.waiters.filter((entry) => entry !== waiter);
          resolve();
        }, STORED_POSITION_POLL_MS);
        this.waiters.push(waiter);
      });
      if (!this.reached(position)) await this.refreshFromStorage().catch(() => {});
    }
  }

  private async refreshFromStorage(): Promise<void> {
    const stored = await this.db.select().from(logPositions).where(eq(logPositions.log, this.log.name));
    for (const row of stored) this.advance({ partition: row.partition, nextOffset: row.nextOffset.toString() });
  }

  private advance(position: LogPosition): void {
    if (compareOffsets(position.nextOffset, this.appliedPosition(position.partition)) > 0) {
      this.applied.set(position.partition, position.nextOffset);
    }
  }

  /** Resolves once the ledger has applied every partition up to the given positions. */
  async waitAppliedAll(positions: readonly LogPosition[], timeoutMs: number): Promise<void> {
    await Promise.all(positions.map((position) => this.waitApplied(position, timeoutMs)));
  }

  appliedPosition(partition: number): string {
    return this.applied.get(partition) ?? '0';
  }

  private reached(position: LogPosition): boolean {
    return compareOffsets(this.appliedPosition(position.partition), position.nextOffset) >= 0;
  }

  private async handle(batch: LogBatch): Promise<void> {
    const claims = batch.events.filter((event): event is ClaimEvent => event.kind === 'claim');
    const expiries = batch.events.filter((event): event is ExpireEvent => event.kind === 'expire');
    try {
      await this.db.transaction(async (tx) => {
        await applyClaims(tx, claims);
        await applyExpiries(tx, expiries);
        await storePositions(tx, this.log.name, batch.positions);
      });
    } catch (error) {
      this.failedBatches += 1;
      this.options.onError?.(error);
      throw error;
    }
    this.appliedEvents += batch.events.length;
    for (const position of batch.positions) this.advance(position);
    this.options.onApplied?.({ claims, expiries });
    const ready = this.waiters.filter((waiter) => this.reached(waiter.position));
    this.waiters = this.waiters.filter((waiter) => !this.reached(waiter.position));
    for (const waiter of ready) waiter.resolve();
  }
}

/** Inserts the new claims, posts their transfers, and moves each packet's counters. */
export async function applyClaims(tx: Tx, events: readonly ClaimEvent[]): Promise<void> {
  if (events.length === 0) return;
  const inserted = await rowsOf<{ packet_id: string; seq: number; user_id: string; amount_fen: string | number }>(
    tx,
    sql`insert into claims (packet_id, seq, user_id, amount_fen, claimed_at)
        select packet_id, seq, user_id, amount_fen, timestamptz 'epoch' + at_ms * interval '1 millisecond'
        from unnest(${sql.param(events.map((event) => event.packetId))}::text[],
                    ${sql.param(events.map((event) => event.seq))}::int[],
                    ${sql.param(events.map((event) => event.userId))}::text[],
                    ${sql.param(events.map((event) => String(event.amountFen)))}::bigint[],
                    ${sql.param(events.map((event) => String(event.atMs)))}::bigint[])
             as input(packet_id, seq, user_id, amount_fen, at_ms)
        on conflict do nothing
        returning packet_id, seq, user_id, amount_fen`,
  );
  if (inserted.length === 0) return;
  const transfers: Transfer[] = inserted.map((row) => ({
    id: claimTransferId(row.packet_id, row.seq),
    debitAccountId: escrowAccount(row.packet_id),
    creditAccountId: walletAccount(row.user_id),
    amountFen: Number(row.amount_fen),
  }));
  await postTransfers(tx, transfers);

  // Move each packet's counters by what this batch added (no re-scan of its claims).
  const added = new Map<string, { count: number; fen: number; lastMs: number }>();
  const atMs = new Map(events.map((event) => [claimTransferId(event.packetId, event.seq), event.atMs]));
  for (const row of inserted) {
    const entry = added.get(row.packet_id) ?? { count: 0, fen: 0, lastMs: 0 };
    entry.count += 1;
    entry.fen += Number(row.amount_fen);
    entry.lastMs = Math.max(entry.lastMs, atMs.get(claimTransferId(row.packet_id, row.seq)) ?? 0);
    added.set(row.packet_id, entry);
  }
  const touched = await rowsOf<{ id: string; type: string; status: string }>(
    tx,
    sql`update packets set
          claimed_count = packets.claimed_count + input.added_count,
          claimed_fen = packets.claimed_fen + input.added_fen,
          status = case when packets.claimed_count + input.added_count = packets.count then 'finished' else packets.status end,
          finished_at = case when packets.claimed_count + input.added_count = packets.count
                             then timestamptz 'epoch' + input.last_ms * interval '1 millisecond' else null end
        from unnest(${sql.param([...added.keys()])}::text[],
                    ${sql.param([...added.values()].map((entry) => entry.count))}::int[],
                    ${sql.param([...added.values()].map((entry) => String(entry.fen)))}::bigint[],
                    ${sql.param([...added.values()].map((entry) => String(entry.lastMs)))}::bigint[])
             as input(packet_id, added_count, added_fen, last_ms)
        where packets.id = input.packet_id
        returning packets.id, packets.type, packets.status`,
  );
  // 手气最佳 is fixed once the last share is in: largest amount, earliest seq on a tie.
  const finishedLucky = touched.filter((row) => row.type === 'group_lucky' && row.status === 'finished');
  if (finishedLucky.length > 0) {
    await tx.execute(sql`
      update packets set best_seq = (
        select seq from claims best where best.packet_id = packets.id order by best.amount_fen desc, best.seq asc limit 1)
      where id = any(${sql.param(finishedLucky.map((row) => row.id))}::text[])`);
  }
}

/** Refunds the remainder of each expired packet to its sender, once, and closes the packet. */
export async function applyExpiries(tx: Tx, events: readonly ExpireEvent[]): Promise<void> {
  if (events.length === 0) return;
  const refunds = events.filter((event) => event.refundFen > 0);
  await postTransfers(
    tx,
    refunds.map((event) => ({
      id: refundTransferId(event.packetId),
      debitAccountId: escrowAccount(event.packetId),
      creditAccountId: walletAccount(event.senderId),
      amountFen: event.refundFen,
    })),
  );
  await tx.execute(sql`
    update packets set status = 'expired', refund_fen = input.refund_fen
    from unnest(${sql.param(events.map((event) => event.packetId))}::text[],
                ${sql.param(events.map((event) => String(event.refundFen)))}::bigint[]) as input(packet_id, refund_fen)
    where packets.id = input.packet_id and packets.status = 'live'`);
}

async function storePositions(tx: Tx, log: string, positions: readonly LogPosition[]): Promise<void> {
  if (positions.length === 0) return;
  await tx.execute(sql`
    insert into log_positions (log, partition, next_offset)
    select ${log}, partition, next_offset
    from unnest(${sql.param(positions.map((position) => position.partition))}::int[],
                ${sql.param(positions.map((position) => position.nextOffset))}::bigint[]) as input(partition, next_offset)
    on conflict (log, partition) do update set next_offset = greatest(log_positions.next_offset, excluded.next_offset)`);
}
