// Notifications (API.md): webhooks get every event of a scenario exactly as the contract says,
// signed, in order per packet; a receiver that answers 500 for a while gets every event
// afterwards with the same ids; the admin routes; the live stream resumes with Last-Event-ID.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyWebhook } from '../../src/notify/signature.js';
import { startHarness, type Harness } from '../support/harness.js';
import { apiClient, expectError } from '../support/http-client.js';
import { startReceiver, type Receiver } from '../support/webhook-receiver.js';

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
