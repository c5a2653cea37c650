// The ledger's tables. Money is bigint fen; every movement is a row in `transfers` whose id
// is its idempotency key, and `accounts.balance_fen` is the running sum of those rows.
import { sql } from 'drizzle-orm';
import { bigint, bigserial, boolean, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';

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
    /**
     * pending_payment | awaiting_funds | live | finished | expired | cancelled: written by the
     * ledger consumer as events are applied (a packet paid from the balance starts live).
     */
    status: text('status').notNull(),
    /** balance | sandbox (a provider). */
    payWith: text('pay_with').notNull().default('balance'),
    /** The provider's order (ours, one per packet); null when paid from the balance. */
    orderId: text('order_id'),
    /** When a provider-paid packet's funds were booked (fund:<packet>): the second sweep runs PAYMENT_RESWEEP_MS later. */
    fundedAt: moment('funded_at'),
    /** When the second sweep credited what it found (nothing, unless a held claim was booked after the funds). */
    resweptAt: moment('reswept_at'),
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
    index('packets_payment_due_idx').on(table.createdAt).where(sql`status in ('pending_payment', 'awaiting_funds')`),
    index('packets_resweep_idx').on(table.fundedAt).where(sql`funded_at is not null and reswept_at is null`),
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
    /**
     * False while the claim's money is held (decided while its packet awaited funds): it has no
     * transfer yet. Funding credits it; a cancelled packet leaves it false for good (void).
     */
    credited: boolean('credited').notNull().default(true),
  },
  (table) => [
    primaryKey({ columns: [table.packetId, table.seq] }),
    index('claims_held_idx').on(table.userId).where(sql`not credited`),
    // The final judge of "no user twice": even a buggy engine cannot pay one user twice.
    uniqueIndex('claims_packet_user_idx').on(table.packetId, table.userId),
    index('claims_user_idx').on(table.userId, table.claimedAt),
  ],
);

/**
 * One row per provider order (one per provider-paid packet), written with the packet. Its status
 * is what the log says: created → paid (funded, or a late credit) | cancelled. `closed_at` is set
 * once the provider has closed an order that timed out unpaid.
 */
export const paymentOrders = pgTable('payment_orders', {
  orderId: text('order_id').primaryKey(),
  provider: text('provider').notNull(),
  packetId: text('packet_id').notNull().unique(),
  amountFen: fen('amount_fen').notNull(),
  payToken: text('pay_token').notNull(),
  expiresAt: moment('expires_at').notNull(),
  status: text('status').notNull().default('created'),
  paidAt: moment('paid_at'),
  closedAt: moment('closed_at'),
  createdAt: moment('created_at').notNull().default(sql`now()`),
});

/**
 * Notification nonces seen, per provider: a notification whose nonce is here is a replay. Only
 * the signature window needs remembering (an older notification is refused by its timestamp),
 * so rows older than that are deleted: the table stays bounded.
 */
export const paymentNonces = pgTable(
  'payment_nonces',
  {
    provider: text('provider').notNull(),
    nonce: text('nonce').notNull(),
    seenAt: moment('seen_at').notNull(),
  },
  (table) => [primaryKey({ columns: [table.provider, table.nonce] }), index('payment_nonces_seen_idx').on(table.seenAt)],
);

/**
 * The notifications chat apps hear of (API.md, Notifications), in the order they were derived:
 * `seq` orders them (per packet, and for a user's stream), `id` is deterministic from what
 * happened, so deriving an event again (a replayed batch) inserts nothing.
 */
export const notificationEvents = pgTable(
  'notification_events',
  {
    seq: bigserial('seq', { mode: 'number' }).primaryKey(),
    id: text('id').notNull().unique(),
    type: text('type').notNull(),
    packetId: text('packet_id'),
    data: jsonb('data').notNull(),
    createdAt: moment('created_at').notNull(),
  },
);

/** Who an event concerns, for their live stream (GET /v1/me/events), in seq order. */
export const notificationRecipients = pgTable(
  'notification_recipients',
  {
    userId: text('user_id').notNull(),
    seq: bigint('seq', { mode: 'number' }).notNull(),
  },
  (table) => [primaryKey({ columns: [table.userId, table.seq] })],
);

/** Registered webhook endpoints; `events` null means every type. */
export const webhooks = pgTable('webhooks', {
  id: text('id').primaryKey(),
  url: text('url').notNull(),
  events: jsonb('events').$type<string[] | null>(),
  secret: text('secret').notNull(),
  createdAt: moment('created_at').notNull().default(sql`now()`),
});

/**
 * The durable delivery schedule: one row per (endpoint, event). `pending` until a 2xx
 * (`delivered`) or past the retry horizon (`dead`); `leased_until` marks one in flight, so
 * several processes share the work without sending one twice at once.
 */
export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    webhookId: text('webhook_id').notNull(),
    eventSeq: bigint('event_seq', { mode: 'number' }).notNull(),
    packetId: text('packet_id'),
    state: text('state').notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: moment('next_attempt_at').notNull(),
    leasedUntil: moment('leased_until'),
    lastStatus: integer('last_status'),
    lastError: text('last_error'),
    deliveredAt: moment('delivered_at'),
    createdAt: moment('created_at').notNull(),
  },
  (table) => [
    primaryKey({ columns: [table.webhookId, table.eventSeq] }),
    // The head of each (endpoint, packet) queue, read in index order (leasing, notifications.ts).
    index('webhook_deliveries_packet_idx').on(table.webhookId, table.packetId, table.eventSeq).where(sql`state = 'pending'`),
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
