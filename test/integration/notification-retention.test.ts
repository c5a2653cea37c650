// Retention of notifications: delivered deliveries go after DELIVERIES_KEPT_MS, events (and who
// they concern) after EVENTS_KEPT_MS unless a delivery of them is still pending; pending
// deliveries and recent rows stay.
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowsOf } from '../../src/ledger/database.js';
import { DELIVERIES_KEPT_MS, EVENTS_KEPT_MS } from '../../src/ledger/notifications.js';
import { startHarness, type Harness } from '../support/harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

const count = async (table: string) => Number((await rowsOf<{ n: string }>(h.hongbao.database, sql.raw(`select count(*) as n from ${table}`)))[0]!.n);

describe('notification retention', () => {
  it('deletes what is past keeping and nothing else', async () => {
    const nowMs = Date.now();
    const old = new Date(nowMs - EVENTS_KEPT_MS - 60_000).toISOString();
    const oldDelivery = new Date(nowMs - DELIVERIES_KEPT_MS - 60_000).toISOString();
    await h.hongbao.database.execute(sql`insert into webhooks (id, url, events, secret) values ('wh_r', 'http://127.0.0.1:1/x', null, 's')`);
    await h.hongbao.database.execute(sql`
      insert into notification_events (seq, id, type, packet_id, data, created_at) values
        (900001, 'evt_old_done', 'packet.sent', 'p_r1', '{}'::jsonb, ${old}::timestamptz),
        (900002, 'evt_old_pending', 'packet.sent', 'p_r2', '{}'::jsonb, ${old}::timestamptz),
        (900003, 'evt_new', 'packet.sent', 'p_r3', '{}'::jsonb, now())`);
    await h.hongbao.database.execute(sql`insert into notification_recipients (user_id, seq) values ('u', 900001), ('u', 900002), ('u', 900003)`);
    await h.hongbao.database.execute(sql`
      insert into webhook_deliveries (webhook_id, event_seq, packet_id, state, next_attempt_at, created_at) values
        ('wh_r', 900001, 'p_r1', 'delivered', now(), ${oldDelivery}::timestamptz),
        ('wh_r', 900002, 'p_r2', 'pending', now(), ${oldDelivery}::timestamptz),
        ('wh_r', 900003, 'p_r3', 'delivered', now(), now())`);
    const removed = await h.hongbao.storage.notifications.pruneNotifications(nowMs);
    expect(removed).toBe(3); // the old delivered delivery, the old event with no pending delivery, its recipient row
    const events = await rowsOf<{ id: string }>(h.hongbao.database, sql`select id from notification_events where seq >= 900001 order by seq`);
    expect(events.map((row) => row.id)).toEqual(['evt_old_pending', 'evt_new']);
    expect(await count('webhook_deliveries')).toBe(2);
    expect(await count('notification_recipients')).toBe(2);
  });
});
