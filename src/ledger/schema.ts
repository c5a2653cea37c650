// The ledger's tables. Money is bigint fen; every movement is a row in `transfers` whose id
// is its idempotency key, and `accounts.balance_fen` is the running sum of those rows.
import { sql } from 'drizzle-orm';
import { bigint, bigserial, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';

const fen = (name: string) => bigint(name, { mode: 'number' });
const moment = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

/** `wallet:<user>`, `escrow:<packet>`, `external:deposits`. Σ balance_fen over all rows is 0. */
export const accounts = pgTable('accounts', {
  id: text('id').primaryKey(),
  kind: text('kind').notNull(),
  balanceFen: fen('balance_fen').notNull().default(0),
});

/** One money movement: debit one account, credit another. The id makes it idempotent. */
export const transfers = pgTable(
  'transfers',
  {
    id: text('id').primaryKey(),
    debitAccountId: text('debit_account_id').notNull(),
    creditAccountId: text('credit_account_id').notNull(),
    amountFen: fen('amount_fen').notNull(),
    createdAt: moment('created_at').notNull().default(sql`now()`),
  },
  (table) => [index('transfers_debit_idx').on(table.debitAccountId), index('transfers_credit_idx').on(table.creditAccountId)],
);

export const packets = pgTable(
  'packets',
  {
    id: text('id').primaryKey(),
    type: text('type').notNull(),
    senderId: text('sender_id').notNull(),
    targetId: text('target_id').notNull(),
    count: integer('count').notNull(),
    totalFen: fen('total_fen').notNull(),
    greeting: text('greeting').notNull(),
    members: jsonb('members').$type<string[] | null>(),
    /** live | finished | expired: written by the ledger consumer as events are applied. */
    status: text('status').notNull(),
    createdAt: moment('created_at').notNull(),
    liveAt: moment('live_at').notNull(),
    expiresAt: moment('expires_at').notNull(),
    claimedCount: integer('claimed_count').notNull().default(0),
    claimedFen: fen('claimed_fen').notNull().default(0),
    refundFen: fen('refund_fen'),
    finishedAt: moment('finished_at'),
    bestSeq: integer('best_seq'),
  },
  (table) => [
    index('packets_sender_idx').on(table.senderId, table.createdAt),
    index('packets_live_expiry_idx').on(table.expiresAt).where(sql`status = 'live'`),
  ],
);

export const claims = pgTable(
  'claims',
  {
    packetId: text('packet_id').notNull(),
    seq: integer('seq').notNull(),
    userId: text('user_id').notNull(),
    amountFen: fen('amount_fen').notNull(),
    claimedAt: moment('claimed_at').notNull(),
  },
  (table) => [
    primaryKey({ columns: [table.packetId, table.seq] }),
    // The final judge of "no user twice": even a buggy engine cannot pay one user twice.
    uniqueIndex('claims_packet_user_idx').on(table.packetId, table.userId),
    index('claims_user_idx').on(table.userId, table.claimedAt),
  ],
);

/** The embedded event log: append-only, read by the ledger consumer in seq order. */
export const logEvents = pgTable('log_events', {
  seq: bigserial('seq', { mode: 'number' }).primaryKey(),
  packetId: text('packet_id').notNull(),
  event: jsonb('event').notNull(),
});

/** How far the ledger consumer has applied each log partition; written in the same transaction as the effects. */
export const logPositions = pgTable(
  'log_positions',
  {
    log: text('log').notNull(),
    partition: integer('partition').notNull(),
    nextOffset: bigint('next_offset', { mode: 'bigint' }).notNull(),
  },
  (table) => [primaryKey({ columns: [table.log, table.partition] })],
);

/** Stored first responses for Idempotency-Key, per user and route. */
export const idempotencyKeys = pgTable(
  'idempotency_keys',
  {
    userId: text('user_id').notNull(),
    route: text('route').notNull(),
    key: text('key').notNull(),
    requestHash: text('request_hash').notNull(),
    response: jsonb('response').notNull(),
    createdAt: moment('created_at').notNull().default(sql`now()`),
  },
  (table) => [primaryKey({ columns: [table.userId, table.route, table.key] })],
);

/**
 * Conflicts the ledger met and did not apply: an event or transfer whose id (or claim key)
 * exists with other terms. Written in the same transaction as the batch that met it; the id
 * is derived from the conflicting terms, so a replay records nothing new. Reconciliation
 * reports every row until an operator resolves it.
 */
export const ledgerConflicts = pgTable(
  'ledger_conflicts',
  {
    id: text('id').primaryKey(),
    /** exists_with_different_amount | exists_with_different_user | exists_with_different_accounts | user_already_claimed_other_seq */
    code: text('code').notNull(),
    transferId: text('transfer_id').notNull(),
    packetId: text('packet_id'),
    /** The terms the event asked for. */
    expected: jsonb('expected').notNull(),
    /** The terms the ledger already held. */
    stored: jsonb('stored').notNull(),
    message: text('message').notNull(),
    recordedAt: moment('recorded_at').notNull().default(sql`now()`),
  },
  (table) => [index('ledger_conflicts_packet_idx').on(table.packetId)],
);
