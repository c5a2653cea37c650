// One slow endpoint never delays the others: with a receiver that takes 2 s per answer and a
// backlog of events, a second endpoint still gets every event at once, and the slow one never
// has more than its bound in flight.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IN_FLIGHT_PER_WEBHOOK_MAX } from '../../src/notify/dispatcher.js';
import { startHarness, type Harness } from '../support/harness.js';
import { apiClient } from '../support/http-client.js';
import { startReceiver, type Receiver } from '../support/webhook-receiver.js';

let h: Harness;
let slow: Receiver;
let fast: Receiver;
const api = apiClient(() => h, 'fair');

beforeAll(async () => {
  h = await startHarness({ runJobs: true, webhookRetryDelayMs: () => 100 });
  [slow, fast] = await Promise.all([startReceiver('/slow'), startReceiver('/fast')]);
});
afterAll(async () => {
  await h?.stop();
  await Promise.all([slow?.close(), fast?.close()]);
});

describe('webhook fairness', () => {
  it('a slow endpoint holds only its own bound; the other endpoint gets everything at once', async () => {
    slow.delay(2_000);
    for (const receiver of [slow, fast]) {
      const created = await h.call('POST', '/v1/admin/webhooks', { user: 'ops', admin: true, body: { url: receiver.url, events: ['packet.opened'] } });
      expect(created.status).toBe(201);
    }
    await api.fund('fair-s', '100.00');
    const packets = [];
    // Ten packets: deliveries of one packet go one at a time (in order), so ten are in flight at most.
    for (let index = 0; index < 10; index += 1) packets.push(await api.sendOk('fair-s', { type: 'group_fixed', targetId: 'g', count: 4, amount: '1.00' }));
    const startedMs = Date.now();
    const opens = packets.flatMap((packet) => Array.from({ length: 4 }, (_, index) => api.openOk(packet.id, `fair-u${index}`)));
    await Promise.all(opens);
    // The fast endpoint has all 40 well before the slow one could have answered 40 at 8 at a time (2 s each: ≥ 10 s).
    const deadline = Date.now() + 8_000;
    while (fast.received.length < 40 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(fast.received.length).toBe(40);
    expect(Date.now() - startedMs).toBeLessThan(8_000);
    expect(slow.received.length).toBeLessThan(40);
    // The slow one was sent as many at once as its bound allows, and never more; one packet's one at a time.
    expect(slow.maxInFlight).toBe(Math.min(IN_FLIGHT_PER_WEBHOOK_MAX, packets.length));
  });
});
