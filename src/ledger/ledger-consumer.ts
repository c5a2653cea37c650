// The ledger consumer (入账异步): reads the event log and applies each batch in ONE
// transaction with bulk statements, storing the log position in that same transaction.
// A crash neither skips nor doubles anything: the position and the effects commit together,
// and every effect is keyed by its transfer id, so a replayed event changes nothing.
import { eq, sql } from 'drizzle-orm';
import { UnavailableError } from '../domain/errors.js';
import { compareOffsets, type EventLog, type LogBatch, type LogPosition, type Subscription } from '../log/event-log.js';
import type { ClaimEvent, ExpireEvent, PaymentEvent } from '../log/events.js';
import { claimTransferId, escrowAccount, refundTransferId, walletAccount } from '../log/events.js';
import { compareClaimTerms, newConflict, recordConflicts, type LedgerConflict, type LedgerTerms } from './conflicts.js';
import { rowsOf, type Db, type Tx } from './database.js';
import { applyPayments, heldClaimsOf, paymentAccounts } from './payments.js';
import { logPositions } from './schema.js';
import { postTransfersComparing } from './transfers.js';

export type { LedgerConflict, LedgerConflictCode } from './conflicts.js';

export interface AppliedBatch {
  /** Every claim of the batch: booked, replayed, or recorded as a conflict; the ledger is done with each. */
  readonly claims: readonly ClaimEvent[];
  readonly expiries: readonly ExpireEvent[];
  readonly payments: readonly PaymentEvent[];
  /** The conflicts this batch recorded for the first time (a replay records none again). */
  readonly conflicts: readonly LedgerConflict[];
  /** How long the batch's transaction took, from its first statement to its commit. */
  readonly durationMs: number;
}

export interface ConsumerOptions {
  /** Called after each committed batch (pending credits, metrics). */
  readonly onApplied?: (batch: AppliedBatch) => void;
  readonly onError?: (error: unknown) => void;
  /**
   * Called after the batch committed, once per newly recorded conflict: an event the ledger
   * did not apply because its id exists with other terms. Log it as an error; it is also
   * recorded in ledger_conflicts and reported by reconciliation.
   */
  readonly onConflict?: (conflict: LedgerConflict) => void;
}

/** How often a waiter re-reads the stored positions, for a consumer running in another process. */
const STORED_POSITION_POLL_MS = 100;

interface Waiter {
  readonly position: LogPosition;
  readonly resolve: () => void;
}

/** What the rest of a process uses of its consumer: this class, or its proxy in the storage thread. */
export interface ConsumerPort {
  start(): Promise<void>;
  stop(): Promise<void>;
  waitApplied(position: LogPosition, timeoutMs: number): Promise<void>;
  waitAppliedAll(positions: readonly LogPosition[], timeoutMs: number): Promise<void>;
  appliedPosition(partition: number): string;
  readonly appliedEvents: number;
  readonly failedBatches: number;
  readonly conflicts: number;
  readonly failedPositionReads: number;
}

export class LedgerConsumer implements ConsumerPort {
  private readonly applied = new Map<number, string>();
  private waiters: Waiter[] = [];
  private subscription: Subscription | undefined;
  appliedEvents = 0;
  failedBatches = 0;
  /** Conflicts recorded by this consumer since it was built (replays of known conflicts not counted). */
  conflicts = 0;
  /** Reads of the stored positions (another process's progress) that failed, since start. */
  failedPositionReads = 0;

  constructor(
    private readonly db: Db,
    private readonly log: EventLog,
    private readonly options: ConsumerOptions = {},
  ) {}

  /**
   * Subscribes with the stored positions as they stand whenever the log asks (on Kafka, at each
   * assignment): another consumer of the group may have moved a partition since this one held it.
   */
  async start(): Promise<void> {
    this.subscription = await this.log.subscribe(() => this.readStoredPositions(), (batch) => this.handle(batch));
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
      if (!this.reached(position)) {
        await this.readStoredPositions().catch((error: unknown) => {
          // The database did not answer: the wait goes on until its deadline, and says why then.
          this.failedPositionReads += 1;
          this.options.onError?.(error);
        });
      }
    }
  }

  /** The positions stored with the last batches applied (by any consumer of this log); this consumer learns them too. */
  private async readStoredPositions(): Promise<LogPosition[]> {
    const stored = await this.db.select().from(logPositions).where(eq(logPositions.log, this.log.name));
    const positions = stored.map((row) => ({ partition: row.partition, nextOffset: row.nextOffset.toString() }));
    for (const position of positions) this.advance(position);
    return positions;
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

  /** Every partition's applied position, as this consumer knows them. */
  appliedPositions(): LogPosition[] {
    return [...this.applied].map(([partition, nextOffset]) => ({ partition, nextOffset }));
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
    const payments = batch.events.filter((event): event is PaymentEvent => event.kind === 'payment');
    let recorded: LedgerConflict[];
    const startedMs = performance.now();
    try {
      // Conflicts are recorded in the batch's own transaction: the consumer moves past a
      // conflicting event (no crash loop) and the record of it cannot be lost.
      recorded = await this.db.transaction(async (tx) => {
        const fresh = await recordConflicts(tx, await applyBatch(tx, claims, expiries, payments));
        await storePositions(tx, this.log.name, batch.positions);
        return fresh;
      });
    } catch (error) {
      this.failedBatches += 1;
      this.options.onError?.(error);
      throw error;
    }
    this.appliedEvents += batch.events.length;
    this.conflicts += recorded.length;
    for (const position of batch.positions) this.advance(position);
    for (const conflict of recorded) this.options.onConflict?.(conflict);
    this.options.onApplied?.({ claims, expiries, payments, conflicts: recorded, durationMs: performance.now() - startedMs });
    const ready = this.waiters.filter((waiter) => this.reached(waiter.position));
    this.waiters = this.waiters.filter((waiter) => !this.reached(waiter.position));
    for (const waiter of ready) waiter.resolve();
  }
}

/**
 * Applies a batch's claims, then its payment events, then its expiries, in the caller's
 * transaction; returns the conflicts met. Claims first: a funding credits the held claims decided
 * before it, which the log holds before it, so they must be booked when it runs.
 *
 * Batches of different partitions run at once (several consumers, each its own transaction
 * stream) and may share wallets: an opener of one packet is the sender of another. One posting
 * locks its accounts in account order, but a batch with claims and refunds posts twice, and two
 * ordered passes are not one order: a batch holding zed's wallet (a claim) that then waits for
 * the sender's (a refund) deadlocks with a batch that holds the sender's and waits for zed's.
 * So such a batch first locks every existing account it will touch, in account order. Accounts
 * created on the way (a first claim's wallet) are inserted in order by the claims' posting, after
 * that, and no later statement waits for anything but them: the order stays total.
 */
export async function applyBatch(
  tx: Tx,
  claims: readonly ClaimEvent[],
  expiries: readonly ExpireEvent[],
  payments: readonly PaymentEvent[] = [],
): Promise<LedgerConflict[]> {
  const refunds = expiries.filter((event) => event.refundFen > 0);
  const moving = payments.filter((event) => event.change === 'funded' || event.change === 'late_credit');
  const postings = (claims.length > 0 ? 1 : 0) + (refunds.length > 0 ? 1 : 0) + moving.length;
  if (postings > 1) {
    const accounts = new Set<string>(paymentAccounts(moving));
    for (const event of claims) accounts.add(escrowAccount(event.packetId)).add(walletAccount(event.userId));
    for (const event of refunds) accounts.add(escrowAccount(event.packetId)).add(walletAccount(event.senderId));
    // A funding credits the held claims booked before this batch too: their wallets are in the order.
    const funded = moving.filter((event) => event.change === 'funded').map((event) => event.packetId);
    for (const claim of await heldClaimsOf(tx, funded)) accounts.add(walletAccount(claim.userId));
    await tx.execute(sql`select id from accounts where id = any(${sql.param([...accounts])}::text[]) order by id for update`);
  }
  return [...(await applyClaims(tx, claims)), ...(await applyPayments(tx, payments)), ...(await applyExpiries(tx, expiries))];
}

interface StoredClaim {
  readonly seq: number;
  readonly userId: string;
  readonly amountFen: number;
}

const claimTerms = (packetId: string, seq: number, userId: string, amountFen: number): LedgerTerms => ({
  debitAccountId: escrowAccount(packetId),
  creditAccountId: walletAccount(userId),
  amountFen,
  userId,
  seq,
});

/**
 * Each claim is compared with what the packet already holds, in batch order: the same
 * (packet, seq) with the same user and amount is a replay (nothing to do); with another user
 * or amount, or a user who already holds another seq, it is a conflict and is not applied.
 */
async function classifyClaims(tx: Tx, events: readonly ClaimEvent[]): Promise<{ fresh: ClaimEvent[]; conflicts: LedgerConflict[] }> {
  // Only the rows that can meet this batch: the same (packet, seq) or the same (packet, user), both indexed.
  const stored = await rowsOf<{ packet_id: string; seq: number; user_id: string; amount_fen: string | number }>(
    tx,
    // Two equality joins, one per index, rather than one join on an OR that no index serves.
    sql`with input as (
          select * from unnest(${sql.param(events.map((event) => event.packetId))}::text[],
                               ${sql.param(events.map((event) => event.seq))}::int[],
                               ${sql.param(events.map((event) => event.userId))}::text[]) as input(packet_id, seq, user_id))
        select c.packet_id, c.seq, c.user_id, c.amount_fen from input join claims c on c.packet_id = input.packet_id and c.seq = input.seq
        union
        select c.packet_id, c.seq, c.user_id, c.amount_fen from input join claims c on c.packet_id = input.packet_id and c.user_id = input.user_id`,
  );
  const bySeq = new Map<string, StoredClaim>();
  const byUser = new Map<string, StoredClaim>();
  const remember = (packetId: string, claim: StoredClaim) => {
    bySeq.set(claimTransferId(packetId, claim.seq), claim);
    byUser.set(`${packetId}\u0000${claim.userId}`, claim);
  };
  for (const row of stored) remember(row.packet_id, { seq: row.seq, userId: row.user_id, amountFen: Number(row.amount_fen) });

  const fresh: ClaimEvent[] = [];
  const conflicts: LedgerConflict[] = [];
  for (const event of events) {
    const id = claimTransferId(event.packetId, event.seq);
    const expected = claimTerms(event.packetId, event.seq, event.userId, event.amountFen);
    const sameSeq = bySeq.get(id);
    if (sameSeq !== undefined) {
      const storedTerms = claimTerms(event.packetId, sameSeq.seq, sameSeq.userId, sameSeq.amountFen);
      const code = compareClaimTerms(expected, storedTerms);
      if (code !== null) conflicts.push(newConflict(code, id, event.packetId, expected, storedTerms));
      continue;
    }
    const sameUser = byUser.get(`${event.packetId}\u0000${event.userId}`);
    if (sameUser !== undefined) {
      const storedTerms = claimTerms(event.packetId, sameUser.seq, sameUser.userId, sameUser.amountFen);
      conflicts.push(newConflict('user_already_claimed_other_seq', id, event.packetId, expected, storedTerms));
      continue;
    }
    remember(event.packetId, { seq: event.seq, userId: event.userId, amountFen: event.amountFen });
    fresh.push(event);
  }
  return { fresh, conflicts };
}

/**
 * Inserts the new claims, posts their transfers, and moves each packet's counters. Returns the
 * conflicts met (claims that were not applied); the rest of the batch is applied regardless.
 */
export async function applyClaims(tx: Tx, events: readonly ClaimEvent[]): Promise<LedgerConflict[]> {
  if (events.length === 0) return [];
  const classified = await classifyClaims(tx, events);
  const conflicts = [...classified.conflicts];
  if (classified.fresh.length === 0) return conflicts;

  // A transfer id can exist without its claim row only through a bug or a hand edit: compared all the same.
  // A held claim (its packet awaits funds) is booked without a transfer: the funding credits it.
  const posting = await postTransfersComparing(
    tx,
    classified.fresh.filter((event) => event.held !== true).map((event) => ({
      id: claimTransferId(event.packetId, event.seq),
      debitAccountId: escrowAccount(event.packetId),
      creditAccountId: walletAccount(event.userId),
      amountFen: event.amountFen,
    })),
  );
  const transferConflicts = new Map(posting.conflicts.map((conflict) => [conflict.transferId, conflict]));
  const inserted: ClaimEvent[] = [];
  for (const event of classified.fresh) {
    const conflict = transferConflicts.get(claimTransferId(event.packetId, event.seq));
    if (conflict === undefined) inserted.push(event);
    else conflicts.push({ ...conflict, packetId: event.packetId, expected: { ...conflict.expected, userId: event.userId, seq: event.seq } });
  }
  if (inserted.length === 0) return conflicts;

  // No "on conflict": every claim here was compared above. A concurrent writer of the same
  // packet (two consumers during a rebalance) fails this batch, which is then read again and compared.
  await tx.execute(
    sql`insert into claims (packet_id, seq, user_id, amount_fen, claimed_at, credited)
        select packet_id, seq, user_id, amount_fen, timestamptz 'epoch' + at_ms * interval '1 millisecond', not held
        from unnest(${sql.param(inserted.map((event) => event.packetId))}::text[],
                    ${sql.param(inserted.map((event) => event.seq))}::int[],
                    ${sql.param(inserted.map((event) => event.userId))}::text[],
                    ${sql.param(inserted.map((event) => String(event.amountFen)))}::bigint[],
                    ${sql.param(inserted.map((event) => String(event.atMs)))}::bigint[],
                    ${sql.param(inserted.map((event) => event.held === true))}::boolean[])
             as input(packet_id, seq, user_id, amount_fen, at_ms, held)`,
  );

  // Move each packet's counters by what this batch added (no re-scan of its claims).
  const added = new Map<string, { count: number; fen: number; lastMs: number }>();
  for (const event of inserted) {
    const entry = added.get(event.packetId) ?? { count: 0, fen: 0, lastMs: 0 };
    entry.count += 1;
    entry.fen += event.amountFen;
    entry.lastMs = Math.max(entry.lastMs, event.atMs);
    added.set(event.packetId, entry);
  }
  const touched = await rowsOf<{ id: string; type: string; status: string }>(
    tx,
    sql`update packets set
          claimed_count = packets.claimed_count + input.added_count,
          claimed_fen = packets.claimed_fen + input.added_fen,
          -- Only a live packet finishes here; one awaiting its funds finishes when they are booked.
          status = case when packets.claimed_count + input.added_count = packets.count and packets.status = 'live' then 'finished' else packets.status end,
          finished_at = case when packets.claimed_count + input.added_count = packets.count and packets.status = 'live'
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
  return conflicts;
}

/**
 * Refunds the remainder of each expired packet to its sender, once, and closes the packet.
 * A refund id that exists with other terms is a conflict: that packet is left as it is.
 */
export async function applyExpiries(tx: Tx, events: readonly ExpireEvent[]): Promise<LedgerConflict[]> {
  if (events.length === 0) return [];
  const refunds = events.filter((event) => event.refundFen > 0);
  const posting = await postTransfersComparing(
    tx,
    refunds.map((event) => ({
      id: refundTransferId(event.packetId),
      debitAccountId: escrowAccount(event.packetId),
      creditAccountId: walletAccount(event.senderId),
      amountFen: event.refundFen,
    })),
  );
  const conflicted = new Set(posting.conflicts.map((conflict) => conflict.transferId));
  const closing = events.filter((event) => !conflicted.has(refundTransferId(event.packetId)));
  if (closing.length > 0) {
    await tx.execute(sql`
      update packets set status = 'expired', refund_fen = input.refund_fen
      from unnest(${sql.param(closing.map((event) => event.packetId))}::text[],
                  ${sql.param(closing.map((event) => String(event.refundFen)))}::bigint[]) as input(packet_id, refund_fen)
      where packets.id = input.packet_id and packets.status = 'live'`);
  }
  const packetOf = new Map(refunds.map((event) => [refundTransferId(event.packetId), event.packetId]));
  return posting.conflicts.map((conflict) => ({ ...conflict, packetId: packetOf.get(conflict.transferId) ?? null }));
}

export async function storePositions(tx: Tx, log: string, positions: readonly LogPosition[]): Promise<void> {
  if (positions.length === 0) return;
  await tx.execute(sql`
    insert into log_positions (log, partition, next_offset)
    select ${log}, partition, next_offset
    from unnest(${sql.param(positions.map((position) => position.partition))}::int[],
                ${sql.param(positions.map((position) => position.nextOffset))}::bigint[]) as input(partition, next_offset)
    on conflict (log, partition) do update set next_offset = greatest(log_positions.next_offset, excluded.next_offset)`);
}
