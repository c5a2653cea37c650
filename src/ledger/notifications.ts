// Notifications in the database (API.md, Notifications): the events in derivation order, who
// each concerns, the registered webhooks, and the durable delivery schedule the dispatcher
// works from. An event and its deliveries are written in one transaction (with the notifier's
// log position, or with the packet a send stores), so none is lost and none is made twice.
import { asc, eq, inArray, sql } from 'drizzle-orm';
import type { NotificationEvent } from '../domain/notification.js';
import type { Claim, Packet } from '../domain/packet.js';
import { rowsOf, type Executor } from './database.js';
import { claimFromRow, packetFromRow } from './packet-store.js';
import { claims, packets, webhooks } from './schema.js';

const at = (ms: number) => new Date(ms).toISOString();

/** The transaction-scoped advisory lock that serializes the writers of notification_events. */
const NOTIFICATION_WRITERS_LOCK = 0x6862_6e74; // 'hbnt'

/**
 * Stores new events (an id already stored is skipped: a replayed batch adds nothing), who they
 * concern, and one pending delivery per webhook that wants their type. Returns how many were new.
 */
export async function recordNotifications(executor: Executor, events: readonly NotificationEvent[], nowMs: number): Promise<number> {
  if (events.length === 0) return 0;
  // One writer of events at a time, until its transaction ends: seqs then become visible in the
  // order they were given, so a stream that read up to seq N can never miss a smaller seq that
  // commits later (a send's packet.sent beside a notifier batch, two batches of two partitions).
  await executor.execute(sql`select pg_advisory_xact_lock(${NOTIFICATION_WRITERS_LOCK})`);
  const inserted = await rowsOf<{ seq: string | number; id: string }>(
    executor,
    sql`insert into notification_events (id, type, packet_id, data, created_at)
        select id, type, packet_id, data::jsonb, timestamptz 'epoch' + at_ms * interval '1 millisecond'
        from unnest(${sql.param(events.map((event) => event.id))}::text[],
                    ${sql.param(events.map((event) => event.type))}::text[],
                    ${sql.param(events.map((event) => event.packetId))}::text[],
                    ${sql.param(events.map((event) => JSON.stringify(event.data)))}::text[],
                    ${sql.param(events.map((event) => String(event.createdAtMs)))}::bigint[])
             with ordinality as input(id, type, packet_id, data, at_ms, position)
        order by position
        on conflict (id) do nothing
        returning seq, id`,
  );
  if (inserted.length === 0) return 0;
  const byId = new Map(events.map((event) => [event.id, event]));
  const fresh = inserted.map((row) => ({ seq: Number(row.seq), event: byId.get(row.id)! }));
  const recipients = fresh.flatMap(({ seq, event }) => event.recipients.map((userId) => ({ userId, seq })));
  if (recipients.length > 0) {
    await executor.execute(sql`
      insert into notification_recipients (user_id, seq)
      select user_id, seq from unnest(${sql.param(recipients.map((entry) => entry.userId))}::text[], ${sql.param(recipients.map((entry) => entry.seq))}::bigint[]) as input(user_id, seq)
      on conflict do nothing`);
  }
  await executor.execute(sql`
    insert into webhook_deliveries (webhook_id, event_seq, packet_id, next_attempt_at, created_at)
    select w.id, input.seq, input.packet_id, ${at(nowMs)}::timestamptz, ${at(nowMs)}::timestamptz
    from unnest(${sql.param(fresh.map((entry) => entry.seq))}::bigint[], ${sql.param(fresh.map((entry) => entry.event.type))}::text[],
                ${sql.param(fresh.map((entry) => entry.event.packetId))}::text[]) as input(seq, type, packet_id)
    join webhooks w on w.events is null or w.events ? input.type
    on conflict do nothing`);
  return fresh.length;
}

/**
 * The packets of a batch, and the claims of those `needingClaims` picks (a whole packet's claims
 * are read only when it finishes or is funded): what derivation reads.
 */
export async function packetFacts(
  executor: Executor,
  packetIds: readonly string[],
  needingClaims: (countOf: (packetId: string) => number | undefined) => readonly string[],
): Promise<Map<string, { packet: Packet; claimedCount: number; claims: Claim[] }>> {
  const facts = new Map<string, { packet: Packet; claimedCount: number; claims: Claim[] }>();
  if (packetIds.length === 0) return facts;
  const ids = [...new Set(packetIds)];
  for (const row of await executor.select().from(packets).where(inArray(packets.id, ids))) {
    facts.set(row.id, { packet: packetFromRow(row), claimedCount: row.claimedCount, claims: [] });
  }
  const needed = needingClaims((packetId) => facts.get(packetId)?.packet.count);
  if (needed.length === 0) return facts;
  for (const row of await executor.select().from(claims).where(inArray(claims.packetId, [...needed])).orderBy(asc(claims.packetId), asc(claims.seq))) {
    facts.get(row.packetId)?.claims.push(claimFromRow(row));
  }
  return facts;
}

export interface StoredWebhook {
  readonly id: string;
  readonly url: string;
  readonly events: readonly string[] | null;
  readonly secret: string;
  readonly createdAtMs: number;
}

export async function createWebhook(executor: Executor, webhook: Omit<StoredWebhook, 'createdAtMs'>): Promise<StoredWebhook> {
  const rows = await executor
    .insert(webhooks)
    .values({ id: webhook.id, url: webhook.url, events: webhook.events === null ? null : [...webhook.events], secret: webhook.secret })
    .returning();
  const row = rows[0]!;
  return { id: row.id, url: row.url, events: row.events ?? null, secret: row.secret, createdAtMs: row.createdAt.getTime() };
}

export async function listWebhooks(executor: Executor): Promise<StoredWebhook[]> {
  const rows = await executor.select().from(webhooks).orderBy(asc(webhooks.createdAt), asc(webhooks.id));
  return rows.map((row) => ({ id: row.id, url: row.url, events: row.events ?? null, secret: row.secret, createdAtMs: row.createdAt.getTime() }));
}

/** Removes the endpoint and what was still to be delivered to it. False if there was none. */
export async function deleteWebhook(executor: Executor, id: string): Promise<boolean> {
  const deleted = await executor.delete(webhooks).where(eq(webhooks.id, id)).returning({ id: webhooks.id });
  if (deleted.length === 0) return false;
  await executor.execute(sql`delete from webhook_deliveries where webhook_id = ${id} and state = 'pending'`);
  return true;
}

export interface LeasedDelivery {
  readonly webhookId: string;
  readonly url: string;
  readonly secret: string;
  readonly eventSeq: number;
  readonly attempts: number;
  readonly firstAttemptAtMs: number;
  /** The event as POSTed: {id, type, createdAt, data}. */
  readonly event: { readonly id: string; readonly type: string; readonly createdAt: string; readonly data: unknown };
  readonly eventAtMs: number;
}

/**
 * Takes up to `limit` due deliveries for this process for `leaseMs`: in event order, never one
 * whose packet has an earlier delivery to the same endpoint still pending (order per packet),
 * and at most `perWebhookMax` in flight per endpoint over every process (a lease is "in flight").
 * `skip locked`: processes leasing at once take different rows.
 */
export async function leaseDeliveries(executor: Executor, nowMs: number, limit: number, perWebhookMax: number, leaseMs: number): Promise<LeasedDelivery[]> {
  const rows = await rowsOf<{
    webhook_id: string; url: string; secret: string; event_seq: string | number; attempts: number; first_ms: string | number;
    id: string; type: string; data: unknown; event_ms: string | number;
  }>(
    executor,
    // Only the head of each (endpoint, packet) queue may go (order per packet); per endpoint at most
    // its room (the bound less what is leased now, by any process), so an endpoint with a long
    // backlog never takes the places of the others. The update re-checks the lease under the row
    // lock: two processes leasing at once never take the same delivery.
    sql`with busy as (
          select webhook_id, count(*) as leased from webhook_deliveries
          where state = 'pending' and leased_until > ${at(nowMs)}::timestamptz group by webhook_id
        ),
        heads as (
          select distinct on (d.webhook_id, d.packet_id) d.webhook_id, d.event_seq, d.next_attempt_at, d.leased_until
          from webhook_deliveries d where d.state = 'pending'
          order by d.webhook_id, d.packet_id, d.event_seq
        ),
        ready as (
          select heads.webhook_id, heads.event_seq,
                 row_number() over (partition by heads.webhook_id order by heads.event_seq) + coalesce(busy.leased, 0) as place
          from heads left join busy on busy.webhook_id = heads.webhook_id
          where heads.next_attempt_at <= ${at(nowMs)}::timestamptz
            and (heads.leased_until is null or heads.leased_until <= ${at(nowMs)}::timestamptz)
        ),
        pick as (select webhook_id, event_seq from ready where place <= ${perWebhookMax} order by event_seq limit ${limit}),
        taken as (
          update webhook_deliveries d set leased_until = ${at(nowMs + leaseMs)}::timestamptz
          from pick
          where d.webhook_id = pick.webhook_id and d.event_seq = pick.event_seq and d.state = 'pending'
            and (d.leased_until is null or d.leased_until <= ${at(nowMs)}::timestamptz)
          returning d.webhook_id, d.event_seq, d.attempts, d.created_at
        )
        select t.webhook_id, w.url, w.secret, t.event_seq, t.attempts, (extract(epoch from t.created_at) * 1000)::bigint as first_ms,
               e.id, e.type, e.data, (extract(epoch from e.created_at) * 1000)::bigint as event_ms
        from taken t join webhooks w on w.id = t.webhook_id join notification_events e on e.seq = t.event_seq
        order by t.event_seq`,
  );
  return rows.map((row) => {
    const eventAtMs = Number(row.event_ms);
    const data = typeof row.data === 'string' ? JSON.parse(row.data) : row.data;
    return {
      webhookId: row.webhook_id,
      url: row.url,
      secret: row.secret,
      eventSeq: Number(row.event_seq),
      attempts: row.attempts,
      firstAttemptAtMs: Number(row.first_ms),
      event: { id: row.id, type: row.type, createdAt: new Date(eventAtMs).toISOString(), data },
      eventAtMs,
    };
  });
}

export type DeliveryOutcome =
  | { readonly kind: 'delivered'; readonly status: number }
  | { readonly kind: 'retry'; readonly status: number | null; readonly error: string; readonly nextAttemptAtMs: number }
  | { readonly kind: 'dead'; readonly status: number | null; readonly error: string };

export interface CompletedDelivery {
  readonly webhookId: string;
  readonly eventSeq: number;
  readonly outcome: DeliveryOutcome;
}

/** Records the outcomes of many attempts in one statement (the dispatcher gathers them for a moment). */
export async function completeDeliveries(executor: Executor, completed: readonly CompletedDelivery[], nowMs: number): Promise<void> {
  if (completed.length === 0) return;
  const state = (outcome: DeliveryOutcome) => (outcome.kind === 'delivered' ? 'delivered' : outcome.kind === 'dead' ? 'dead' : 'pending');
  await executor.execute(sql`
    update webhook_deliveries d set
      state = input.state, attempts = d.attempts + 1, leased_until = null, last_status = input.status, last_error = input.error,
      next_attempt_at = input.next_at, delivered_at = case when input.state = 'delivered' then ${at(nowMs)}::timestamptz else null end
    from unnest(${sql.param(completed.map((entry) => entry.webhookId))}::text[],
                ${sql.param(completed.map((entry) => entry.eventSeq))}::bigint[],
                ${sql.param(completed.map((entry) => state(entry.outcome)))}::text[],
                ${sql.param(completed.map((entry) => entry.outcome.status))}::int[],
                ${sql.param(completed.map((entry) => (entry.outcome.kind === 'delivered' ? null : entry.outcome.error.slice(0, 500))))}::text[],
                ${sql.param(completed.map((entry) => at(entry.outcome.kind === 'retry' ? entry.outcome.nextAttemptAtMs : nowMs)))}::timestamptz[])
         as input(webhook_id, event_seq, state, status, error, next_at)
    where d.webhook_id = input.webhook_id and d.event_seq = input.event_seq and d.state = 'pending'`);
}

/** Delivered (or given-up) deliveries are kept this long for operators, then deleted. */
export const DELIVERIES_KEPT_MS = 7 * 24 * 3600_000;
/** Events are kept this long for streams to resume from (a Last-Event-ID older than this is unknown). */
export const EVENTS_KEPT_MS = 30 * 24 * 3600_000;

/** Deletes what is past keeping, in bounded steps; returns how many rows went. */
export async function pruneNotifications(executor: Executor, nowMs: number, limit = 10_000): Promise<number> {
  const deliveries = await rowsOf<{ n: string | number }>(
    executor,
    sql`with gone as (
          delete from webhook_deliveries where ctid in (
            select ctid from webhook_deliveries where state <> 'pending' and created_at < ${at(nowMs - DELIVERIES_KEPT_MS)}::timestamptz limit ${limit})
          returning 1)
        select count(*) as n from gone`,
  );
  const events = await rowsOf<{ n: string | number }>(
    executor,
    sql`with old as (
          select seq from notification_events e where e.created_at < ${at(nowMs - EVENTS_KEPT_MS)}::timestamptz
            and not exists (select 1 from webhook_deliveries d where d.event_seq = e.seq and d.state = 'pending')
          limit ${limit}),
        recipients as (delete from notification_recipients where seq in (select seq from old) returning 1),
        gone as (delete from notification_events where seq in (select seq from old) returning 1)
        select (select count(*) from gone) + (select count(*) from recipients) as n`,
  );
  return Number(deliveries[0]?.n ?? 0) + Number(events[0]?.n ?? 0);
}

/** Deliveries waiting for a retry (attempted at least once, not yet delivered). */
export async function retriesPending(executor: Executor): Promise<number> {
  const rows = await rowsOf<{ count: string | number }>(executor, sql`select count(*) as count from webhook_deliveries where state = 'pending' and attempts > 0`);
  return Number(rows[0]?.count ?? 0);
}

export interface StreamedEvent {
  readonly seq: number;
  readonly id: string;
  readonly type: string;
  readonly createdAtMs: number;
  readonly data: unknown;
}

/** The events that concern a user after `afterSeq`, oldest first. */
export async function eventsFor(executor: Executor, userId: string, afterSeq: number, limit: number): Promise<StreamedEvent[]> {
  const rows = await rowsOf<{ seq: string | number; id: string; type: string; data: unknown; at_ms: string | number }>(
    executor,
    sql`select e.seq, e.id, e.type, e.data, (extract(epoch from e.created_at) * 1000)::bigint as at_ms
        from notification_recipients r join notification_events e on e.seq = r.seq
        where r.user_id = ${userId} and r.seq > ${afterSeq} order by r.seq limit ${limit}`,
  );
  return rows.map((row) => ({
    seq: Number(row.seq),
    id: row.id,
    type: row.type,
    createdAtMs: Number(row.at_ms),
    data: typeof row.data === 'string' ? JSON.parse(row.data) : row.data,
  }));
}

/** The position of an event in a user's stream (for Last-Event-ID), or null if it is not theirs. */
export async function seqOfEvent(executor: Executor, userId: string, eventId: string): Promise<number | null> {
  const rows = await rowsOf<{ seq: string | number }>(
    executor,
    sql`select e.seq from notification_events e join notification_recipients r on r.seq = e.seq and r.user_id = ${userId} where e.id = ${eventId}`,
  );
  return rows.length === 0 ? null : Number(rows[0]!.seq);
}

/** The newest position in a user's stream (a stream opened without Last-Event-ID starts after it). */
export async function lastSeqFor(executor: Executor, userId: string): Promise<number> {
  const rows = await rowsOf<{ seq: string | number | null }>(executor, sql`select max(seq) as seq from notification_recipients where user_id = ${userId}`);
  return Number(rows[0]?.seq ?? 0);
}
