// Notifications (API.md): webhooks get every event of a scenario exactly as the contract says,
// signed, in order per packet; a receiver that answers 500 for a while gets every event
// afterwards with the same ids; the admin routes; the live stream resumes with Last-Event-ID.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyWebhook } from '../../src/notify/signature.js';
import { startHarness, type Harness } from '../support/harness.js';
import { apiClient, expectError } from '../support/http-client.js';
import { forwardReturn, payInSandbox, waitForStatus } from '../support/payments.js';
import { startReceiver, type Received, type Receiver } from '../support/webhook-receiver.js';

let h: Harness;
let receiver: Receiver;
const api = apiClient(() => h, 'ntf');
const run = `n${Date.now().toString(36)}`;
const user = (name: string) => `${run}-${name}`;

beforeAll(async () => {
  h = await startHarness({ webhookRetryDelayMs: () => 100, runJobs: true });
  receiver = await startReceiver();
});
afterAll(async () => {
  await h?.stop();
  await receiver?.close();
});

async function until<T>(what: string, read: () => T | Promise<T>, ok: (value: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (last: ${JSON.stringify(value)})`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('webhooks', () => {
  it('deliver every event of a scenario, signed, in order per packet, exactly as the contract says', async () => {
    const created = await h.call('POST', '/v1/admin/webhooks', { user: 'ops', admin: true, body: { url: receiver.url } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const { id, secret } = created.body;
    expect(secret).toMatch(/^whsec_/);
    const [alice, bob, carol] = [user('alice'), user('bob'), user('carol')];
    await api.fund(alice, '10.00');
    const packet = await api.sendOk(alice, { type: 'group_lucky', targetId: 'g', count: 2, amount: '2.00' });
    const b = await api.openOk(packet.id, bob);
    const c = await api.openOk(packet.id, carol);
    const mine = () => receiver.received.filter((entry) => entry.event.data.packetId === packet.id);
    const got = await until('six events of the packet', mine, (list) => list.length >= 6);
    expect(got.map((entry) => entry.event.type)).toEqual(['packet.sent', 'packet.opened', 'wallet.credited', 'packet.opened', 'wallet.credited', 'packet.finished']);
    for (const entry of got) {
      expect(entry.signature && verifyWebhook(secret, entry.body, entry.signature, Date.now())).toBe(true);
      expect(Object.keys(entry.event).sort()).toEqual(['createdAt', 'data', 'id', 'type']);
      expect(entry.event.data.packetId).toBe(packet.id);
      expect(entry.event.data.senderId).toBe(alice);
    }
    expect(got[1]!.event.data).toMatchObject({ userId: bob, amount: b.amount, seq: 1 });
    expect(got[3]!.event.data).toMatchObject({ userId: carol, amount: c.amount, seq: 2 });
    expect(got[5]!.event.data).toMatchObject({ count: 2, total: '2.00' });
    expect(typeof got[5]!.event.data.secondsToEmpty).toBe('number');
    expect(got[5]!.event.data.bestLuck.userId).toBe(Number(b.amount) >= Number(c.amount) ? bob : carol);
    // Nothing twice.
    expect(new Set(got.map((entry) => entry.event.id)).size).toBe(got.length);
    const listed = await h.call('GET', '/v1/admin/webhooks', { user: 'ops', admin: true });
    expect(listed.body.webhooks.map((webhook: { id: string }) => webhook.id)).toContain(id);
    expect(listed.body.webhooks[0].secret).toBeUndefined();
    expect((await h.call('DELETE', `/v1/admin/webhooks/${id}`, { user: 'ops', admin: true })).status).toBe(200);
    expectError(await h.call('DELETE', `/v1/admin/webhooks/${id}`, { user: 'ops', admin: true }), 404, 'not_found');
  });

  it('a receiver that answers 500 for a while gets every event afterwards, with the same ids', async () => {
    const created = await h.call('POST', '/v1/admin/webhooks', { user: 'ops', admin: true, body: { url: receiver.url, events: ['packet.opened'] } });
    receiver.answer(500);
    const [alice, bob] = [user('a2'), user('b2')];
    await api.fund(alice, '5.00');
    const packet = await api.sendOk(alice, { type: 'group_fixed', targetId: 'g', count: 3, amount: '1.00' });
    await api.openOk(packet.id, bob);
    await api.openOk(packet.id, user('c2'));
    const failing = await until('failed attempts', () => receiver.received.filter((entry) => entry.event.data.packetId === packet.id), (list) => list.length >= 3);
    expect(failing.every((entry) => entry.answered === 500)).toBe(true);
    receiver.answer(200);
    const delivered = await until(
      'both opens delivered',
      () => receiver.received.filter((entry) => entry.event.data.packetId === packet.id && entry.answered === 200),
      (list) => list.length >= 2,
    );
    expect(delivered.map((entry) => entry.event.data.seq)).toEqual([1, 2]);
    const failedIds = new Set(failing.map((entry) => entry.event.id));
    for (const entry of delivered) expect(failedIds.has(entry.event.id) || entry.event.data.seq === 2).toBe(true);
    // The first open's id is the one that failed before.
    expect(failedIds.has(delivered[0]!.event.id)).toBe(true);
    await h.call('DELETE', `/v1/admin/webhooks/${created.body.id}`, { user: 'ops', admin: true });
  });

  it('refuses bad registrations with 400 and non-admins with 403', async () => {
    for (const body of [{ url: 'ftp://x.example/h' }, { url: 'not a url' }, { url: receiver.url, events: ['nope'] }, { url: receiver.url, events: [] }, {}]) {
      expectError(await h.call('POST', '/v1/admin/webhooks', { user: 'ops', admin: true, body }), 400, 'invalid_request');
    }
    expectError(await h.call('POST', '/v1/admin/webhooks', { user: user('x'), body: { url: receiver.url } }), 403, 'forbidden');
    expectError(await h.call('GET', '/v1/admin/webhooks', { user: user('x') }), 403, 'forbidden');
  });
});

// Provider payments and expiry (API.md, Notifications; Payments through a provider): a packet paid
// through the sandbox tells its sender it is live when the funds come and credits the claims held
// until then; a failed or reversed payment cancels it (a held claim is never credited); a packet
// past its lifetime is expired with its refund. Each on its own harness: the sandbox on a real
// port, and a lifetime short enough to pass.
describe('webhooks of payments and expiry', () => {
  let paid: Harness;
  let expiring: Harness;
  let hooks: Receiver;
  const payApi = apiClient(() => paid, 'ntfpay');
  const expApi = apiClient(() => expiring, 'ntfexp');
  const TTL_MS = 1_500;

  beforeAll(async () => {
    hooks = await startReceiver();
    // The sandbox's "delayed" notification waits long enough for the held opens to be decided first.
    [paid, expiring] = await Promise.all([
      startHarness({ webhookRetryDelayMs: () => 100, runJobs: true, withSandbox: { sandbox: { delayedNotifyMs: 1_000 } } }),
      startHarness({ webhookRetryDelayMs: () => 100, runJobs: true, packetTtlMs: TTL_MS }),
    ]);
    for (const harness of [paid, expiring]) {
      const created = await harness.call('POST', '/v1/admin/webhooks', { user: 'ops', admin: true, body: { url: hooks.url } });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
    }
  });
  afterAll(async () => {
    await paid?.stop();
    await expiring?.stop();
    await hooks?.close();
  });

  /** The packet's events as first delivered (a retry of one already delivered is left out). */
  const delivered = (packetId: string) => {
    const seen = new Set<string>();
    return hooks.received.filter((entry) => entry.answered === 200 && entry.event.data.packetId === packetId && !seen.has(entry.event.id) && seen.add(entry.event.id));
  };
  const types = (entries: readonly Received[]) => entries.map((entry) => entry.event.type);

  async function sendPaid(sender: string, count: number, amount: string) {
    const reply = await paid.call('POST', '/v1/packets', {
      user: sender,
      body: { type: 'group_lucky', targetId: 'g', count, amount, payWith: 'sandbox' },
      headers: { 'idempotency-key': payApi.newKey() },
    });
    expect(reply.status, JSON.stringify(reply.body)).toBe(201);
    return reply.body as { packet: { id: string }; payment: { orderId: string; payToken: string } };
  }

  it('a provider-paid packet: opened (not credited) while the funds are awaited, then live, then credited for each held claim, then finished', async () => {
    const [alice, bob, carol] = [user('pa'), user('pb'), user('pc')];
    // Every share held: the packet finishes at the funding.
    const all = await sendPaid(alice, 2, '2.00');
    const returned = await forwardReturn(paid, all.packet.id, alice, await payInSandbox(paid, all.payment, 'success', 'delayed'));
    expect(returned.body.packet.status, JSON.stringify(returned.body)).toBe('awaiting_funds');
    const b = await payApi.openOk(all.packet.id, bob);
    const c = await payApi.openOk(all.packet.id, carol);
    const events = await until('the funded packet\'s events', () => delivered(all.packet.id), (list) => list.length >= 7);
    expect(types(events)).toEqual(['packet.sent', 'packet.opened', 'packet.opened', 'packet.live', 'wallet.credited', 'wallet.credited', 'packet.finished']);
    expect(events[0]!.event.data).toMatchObject({ payWith: 'sandbox', count: 2, total: '2.00', senderId: alice });
    expect(events[1]!.event.data).toEqual({ packetId: all.packet.id, senderId: alice, userId: bob, amount: b.amount, seq: 1, credited: false });
    expect(events[2]!.event.data).toMatchObject({ userId: carol, amount: c.amount, seq: 2, credited: false });
    expect(events[3]!.event.data).toEqual({ packetId: all.packet.id, senderId: alice });
    expect(events.slice(4, 6).map((entry) => entry.event.data)).toEqual([
      { userId: bob, amount: b.amount, packetId: all.packet.id, senderId: alice, seq: 1, reason: 'claim' },
      { userId: carol, amount: c.amount, packetId: all.packet.id, senderId: alice, seq: 2, reason: 'claim' },
    ]);
    const best = Number(b.amount) >= Number(c.amount) ? { userId: bob, amount: b.amount, seq: 1 } : { userId: carol, amount: c.amount, seq: 2 };
    expect(events[6]!.event.data).toMatchObject({ count: 2, total: '2.00', bestLuck: best });
    // The credits are the money the wallets got.
    expect(await payApi.balance(bob)).toBe(b.amount);

    // One share held, the rest opened once live: credited at once, finished at the last.
    const some = await sendPaid(alice, 3, '3.00');
    await forwardReturn(paid, some.packet.id, alice, await payInSandbox(paid, some.payment, 'success', 'delayed'));
    await payApi.openOk(some.packet.id, bob);
    await waitForStatus(paid, some.packet.id, alice, 'live');
    await payApi.openOk(some.packet.id, carol);
    await payApi.openOk(some.packet.id, user('pd'));
    const later = await until('the partly held packet\'s events', () => delivered(some.packet.id), (list) => list.length >= 9);
    expect(types(later)).toEqual([
      'packet.sent',
      'packet.opened',
      'packet.live',
      'wallet.credited',
      'packet.opened',
      'wallet.credited',
      'packet.opened',
      'wallet.credited',
      'packet.finished',
    ]);
    expect(later.filter((entry) => entry.event.type === 'packet.opened').map((entry) => entry.event.data.credited)).toEqual([false, true, true]);
    expect(later.filter((entry) => entry.event.type === 'wallet.credited').map((entry) => entry.event.data.userId)).toEqual([bob, carol, user('pd')]);
  });

  it('a failed payment gives packet.cancelled; a reversed one too, and its held claim is never credited', async () => {
    const alice = user('ca');
    const failed = await sendPaid(alice, 2, '2.00');
    const answer = await forwardReturn(paid, failed.packet.id, alice, await payInSandbox(paid, failed.payment, 'fail', 'never'));
    expect(answer.body.packet.status).toBe('cancelled');
    const failedEvents = await until('the cancelled packet\'s events', () => delivered(failed.packet.id), (list) => list.length >= 2);
    expect(types(failedEvents)).toEqual(['packet.sent', 'packet.cancelled']);
    expect(failedEvents[1]!.event.data).toEqual({ packetId: failed.packet.id, senderId: alice, reason: 'payment_failed' });

    const reversed = await sendPaid(alice, 2, '2.00');
    await forwardReturn(paid, reversed.packet.id, alice, await payInSandbox(paid, reversed.payment, 'reversed', 'delayed'));
    const bob = user('cb');
    const b = await payApi.openOk(reversed.packet.id, bob);
    await waitForStatus(paid, reversed.packet.id, alice, 'cancelled');
    const reversedEvents = await until('the reversed packet\'s events', () => delivered(reversed.packet.id), (list) => list.length >= 3);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(types(delivered(reversed.packet.id))).toEqual(['packet.sent', 'packet.opened', 'packet.cancelled']);
    expect(reversedEvents[1]!.event.data).toMatchObject({ userId: bob, amount: b.amount, credited: false });
    expect(hooks.received.some((entry) => entry.event.type === 'wallet.credited' && entry.event.data.userId === bob)).toBe(false);
  });

  it('a packet past its lifetime gives packet.expired with the refund and how many were claimed', async () => {
    const [alice, bob] = [user('ea'), user('eb')];
    await expApi.fund(alice, '5.00');
    const packet = await expApi.sendOk(alice, { type: 'group_fixed', targetId: 'g', count: 3, amount: '1.20' });
    await expApi.openOk(packet.id, bob);
    await new Promise((resolve) => setTimeout(resolve, TTL_MS + 50));
    await expiring.hongbao.service.expireDue();
    const events = await until('the expired packet\'s events', () => delivered(packet.id), (list) => list.length >= 4);
    expect(types(events)).toEqual(['packet.sent', 'packet.opened', 'wallet.credited', 'packet.expired']);
    expect(events[3]!.event).toMatchObject({ id: `evt_expired_${packet.id}`, data: { packetId: packet.id, senderId: alice, refund: '2.40', claimedCount: 1 } });
    // The refund is what the sender got back: 5.00 − 3.60 + 2.40.
    expect(await expApi.balance(alice)).toBe('3.80');
    // Expiring again adds nothing.
    await expiring.hongbao.service.expireDue();
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(hooks.received.filter((entry) => entry.event.type === 'packet.expired' && entry.event.data.packetId === packet.id && entry.answered === 200)).toHaveLength(1);
  });
});
