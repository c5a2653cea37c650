// Paying through the sandbox provider, end to end over HTTP (API.md, Payments through a provider):
// the sandbox is mounted at /sandbox of an engine on a real port, as `npm start` runs it; the
// engine talks to it, and it notifies the engine, over HTTP. After every scenario the books are
// checked: Σ balances = 0, wallets + escrow = deposits + what the provider paid in, and
// reconciliation (which holds the provider's account against the paid orders) is clean.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../support/harness.js';
import { apiClient, expectError, fen } from '../support/http-client.js';
import { forwardReturn, payInSandbox, postNotification, signedNotification, signedReturn, waitForStatus } from '../support/payments.js';

let h: Harness;
const api = apiClient(() => h, 'pay');

beforeAll(async () => {
  h = await startHarness({ withSandbox: {} });
});
afterAll(async () => {
  await h?.stop();
});

async function sendPaid(sender: string, body: Record<string, unknown> = {}) {
  const reply = await h.call('POST', '/v1/packets', {
    user: sender,
    body: { type: 'group_lucky', targetId: 'g1', count: 3, amount: '3.00', payWith: 'sandbox', ...body },
    headers: { 'idempotency-key': api.newKey() },
  });
  expect(reply.status, JSON.stringify(reply.body)).toBe(201);
  return reply.body as { packet: any; payment: { orderId: string; payToken: string; amount: string; provider: string; expiresAt: string } };
}

async function wallet(user: string) {
  const reply = await h.call('GET', '/v1/wallet', { user });
  return reply.body as { balance: string; pending: string };
}

describe('a packet paid through the sandbox', () => {
  it('pending → (return) awaiting_funds with held claims → (notification) live with every claim credited', async () => {
    const { packet, payment } = await sendPaid('alice1');
    expect(packet.status).toBe('pending_payment');
    expect(packet.payWith).toBe('sandbox');
    expect(packet.expiresAt).toBeUndefined();
    expect(payment).toMatchObject({ provider: 'sandbox', amount: '3.00' });
    expect((await wallet('alice1')).balance).toBe('0.00');
    expect((await api.open(packet.id, 'bob1')).body).toEqual({ state: 'pending_payment' });
    expect((await api.grab(packet.id, 'bob1')).body).toEqual({ state: 'pending_payment' });

    // The payer's app pays; the notification will come 300 ms later (the harness's "delayed").
    const returnPayload = await payInSandbox(h, payment, 'success', 'delayed');
    const returned = await forwardReturn(h, packet.id, 'alice1', returnPayload);
    expect(returned.status, JSON.stringify(returned.body)).toBe(200);
    expect(returned.body.packet.status).toBe('awaiting_funds');
    expect(typeof returned.body.packet.expiresAt).toBe('string');

    const bob = await api.openOk(packet.id, 'bob1');
    await h.settle();
    const held = await api.page(packet.id, 'alice1');
    expect(held.packet.status).toBe('awaiting_funds');
    expect(held.claims).toEqual([expect.objectContaining({ userId: 'bob1', amount: bob.amount, credited: false })]);
    expect(await wallet('bob1')).toEqual({ userId: 'bob1', balance: '0.00', pending: bob.amount });
    await api.expectConserved();

    const live = await waitForStatus(h, packet.id, 'alice1', 'live');
    expect(live.claims).toEqual([expect.objectContaining({ userId: 'bob1', credited: true })]);
    const carol = await api.openOk(packet.id, 'carol1');
    await h.settle();
    expect(await wallet('bob1')).toEqual({ userId: 'bob1', balance: bob.amount, pending: '0.00' });
    expect((await wallet('carol1')).balance).toBe(carol.amount);
    await api.expectConserved();
    const money = await h.money();
    expect(money.providers).toBeGreaterThanOrEqual(300);
  });

  it('goes live directly when the notification comes before the return; the return then changes nothing', async () => {
    const { packet, payment } = await sendPaid('alice2');
    const returnPayload = await payInSandbox(h, payment, 'success', 'normal');
    await waitForStatus(h, packet.id, 'alice2', 'live');
    const returned = await forwardReturn(h, packet.id, 'alice2', returnPayload);
    expect(returned.status).toBe(200);
    expect(returned.body.packet.status).toBe('live');
    await api.openOk(packet.id, 'bob2');
    await api.expectConserved();
  });

  it('a reversed payment (success returned, failure notified) cancels the packet: held claims are void, never credited', async () => {
    const { packet, payment } = await sendPaid('alice3');
    const returnPayload = await payInSandbox(h, payment, 'reversed', 'delayed');
    expect((await forwardReturn(h, packet.id, 'alice3', returnPayload)).body.packet.status).toBe('awaiting_funds');
    const bob = await api.openOk(packet.id, 'bob3');
    await h.settle();
    expect((await wallet('bob3')).pending).toBe(bob.amount);

    const cancelled = await waitForStatus(h, packet.id, 'alice3', 'cancelled');
    expect(cancelled.claims).toEqual([expect.objectContaining({ userId: 'bob3', credited: false })]);
    expect((await api.open(packet.id, 'carol3')).body).toEqual({ state: 'cancelled' });
    expect((await api.grab(packet.id, 'carol3')).body).toEqual({ state: 'cancelled' });
    await h.settle();
    expect(await wallet('bob3')).toEqual({ userId: 'bob3', balance: '0.00', pending: '0.00' });
    const received = await h.call('GET', '/v1/me/received', { user: 'bob3' });
    expect(received.body.items).toEqual([]);
    await api.expectConserved();
  });

  it('a failed payment cancels at the return', async () => {
    const { packet, payment } = await sendPaid('alice4');
    const returnPayload = await payInSandbox(h, payment, 'fail', 'never');
    const returned = await forwardReturn(h, packet.id, 'alice4', returnPayload);
    expect(returned.body.packet.status).toBe('cancelled');
    expect((await api.open(packet.id, 'bob4')).body).toEqual({ state: 'cancelled' });
    await api.expectConserved();
  });

  it('with no notification at all, the timeout query funds a paid order and closes and cancels an unpaid one', async () => {
    const paid = await sendPaid('alice5');
    const unpaid = await sendPaid('alice5');
    const returnPayload = await payInSandbox(h, paid.payment, 'success', 'never');
    await forwardReturn(h, paid.packet.id, 'alice5', returnPayload);
    const bob = await api.openOk(paid.packet.id, 'bob5');
    // Not due yet with the default timeout: nothing happens.
    await h.hongbao.service.settlePaymentsDue();
    expect((await api.page(paid.packet.id, 'alice5')).packet.status).toBe('awaiting_funds');

    const timed = await startHarness({ withSandbox: { timeoutMs: 1_000 } });
    try {
      const t = apiClient(() => timed, 'timeout');
      const send = async () =>
        (await timed.call('POST', '/v1/packets', {
          user: 'alice5',
          body: { type: 'group_fixed', targetId: 'g1', count: 2, amount: '1.00', payWith: 'sandbox' },
          headers: { 'idempotency-key': t.newKey() },
        })).body as { packet: any; payment: any };
      const a = await send();
      const b = await send();
      await forwardReturn(timed, a.packet.id, 'alice5', await payInSandbox(timed, a.payment, 'success', 'never'));
      const opened = await t.openOk(a.packet.id, 'bob5');
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      await timed.hongbao.service.settlePaymentsDue();
      await timed.settle();
      expect((await t.page(a.packet.id, 'alice5')).packet.status).toBe('live');
      expect((await t.page(b.packet.id, 'alice5')).packet.status).toBe('cancelled');
      expect((await timed.call('GET', '/v1/wallet', { user: 'bob5' })).body.balance).toBe(opened.amount);
      // The unpaid order was closed at the provider: it can no longer be paid.
      const late = await fetch(`${timed.sandbox!.url}/v1/pay`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ orderId: b.payment.orderId, payToken: b.payment.payToken, outcome: 'success', notify: 'normal' }),
      });
      expect(late.status).toBe(409);
      await t.expectConserved();
    } finally {
      await timed.stop();
    }
    expect(fen(bob.amount)).toBeGreaterThan(0);
  });

  it('a send retried with its Idempotency-Key makes one order and answers the first response', async () => {
    const key = api.newKey();
    const body = { type: 'group_fixed', targetId: 'g1', count: 2, amount: '1.00', payWith: 'sandbox' };
    const first = await h.call('POST', '/v1/packets', { user: 'alice6', body, headers: { 'idempotency-key': key } });
    const again = await h.call('POST', '/v1/packets', { user: 'alice6', body, headers: { 'idempotency-key': key } });
    expect(again.status).toBe(201);
    expect(again.body).toEqual(first.body);
    const other = await h.call('POST', '/v1/packets', { user: 'alice6', body: { ...body, payWith: 'balance' }, headers: { 'idempotency-key': key } });
    expectError(other, 409, 'idempotency_conflict');
  });
});

describe('the return route', () => {
  it('refuses what does not verify, is for another order or comes from someone else, and changes nothing', async () => {
    const { packet, payment } = await sendPaid('alice7');
    const other = await sendPaid('alice7');
    const returnPayload = await payInSandbox(h, payment, 'success', 'never');
    expectError(await forwardReturn(h, packet.id, 'bob7', returnPayload), 403, 'forbidden');
    expectError(await forwardReturn(h, packet.id, 'alice7', `${returnPayload.slice(0, -4)}AAAA`), 400, 'invalid_request');
    expectError(await forwardReturn(h, packet.id, 'alice7', 'garbage'), 400, 'invalid_request');
    expectError(await forwardReturn(h, other.packet.id, 'alice7', returnPayload), 400, 'invalid_request');
    expectError(await forwardReturn(h, packet.id, 'alice7', signedReturn(h, { orderId: payment.orderId, outcome: 'success', amount: '9.99' })), 400, 'invalid_request');
    expectError(await h.call('POST', `/v1/packets/${packet.id}/payment/return`, { user: 'alice7', body: { returnPayload: 5 } }), 400, 'invalid_request');
    expect((await api.page(packet.id, 'alice7')).packet.status).toBe('pending_payment');
    expect((await api.page(other.packet.id, 'alice7')).packet.status).toBe('pending_payment');
    // A packet paid from the balance has no payment to return.
    await api.fund('alice7', '1.00');
    const balancePaid = await api.sendOk('alice7', { type: 'personal', targetId: 'bob7', count: 1, amount: '1.00' });
    expectError(await forwardReturn(h, balancePaid.id, 'alice7', returnPayload), 400, 'invalid_request');
    // The genuine one, twice: the second changes nothing.
    expect((await forwardReturn(h, packet.id, 'alice7', returnPayload)).body.packet.status).toBe('awaiting_funds');
    const again = await forwardReturn(h, packet.id, 'alice7', returnPayload);
    expect(again.status).toBe(200);
    expect(again.body.packet.status).toBe('awaiting_funds');
    await api.expectConserved();
  });
});

describe('the notification endpoint', () => {
  it('refuses forged, stale and replayed notifications with 401 and changes nothing', async () => {
    const { packet, payment } = await sendPaid('alice8');
    const content = { orderId: payment.orderId, status: 'paid' as const, amount: '3.00' };
    const { generateSigningKeyPair } = await import('../../src/payments/signing.js');
    const forged = signedNotification(h, content, { key: generateSigningKeyPair().privateKey });
    expectError(await postNotification(h, forged), 401, 'unauthorized');
    const tampered = signedNotification(h, content);
    expectError(await postNotification(h, { ...tampered, body: tampered.body.replace('"paid"', '"failed"') }), 401, 'unauthorized');
    const stale = signedNotification(h, content, { timestampSeconds: Math.floor(Date.now() / 1000) - 6 * 60 });
    expectError(await postNotification(h, stale), 401, 'unauthorized');
    const future = signedNotification(h, content, { timestampSeconds: Math.floor(Date.now() / 1000) + 6 * 60 });
    expectError(await postNotification(h, future), 401, 'unauthorized');
    expectError(await postNotification(h, { body: tampered.body, headers: { 'content-type': 'application/json' } }), 401, 'unauthorized');
    expect((await api.page(packet.id, 'alice8')).packet.status).toBe('pending_payment');

    const genuine = signedNotification(h, content);
    expect(await postNotification(h, genuine)).toEqual({ status: 200, body: { code: 'SUCCESS' } });
    expect((await api.page(packet.id, 'alice8')).packet.status).toBe('live');
    // The same message again (same nonce) is a replay: refused, though it would change nothing.
    expectError(await postNotification(h, genuine), 401, 'unauthorized');
    // A repeat with a fresh nonce (how providers retry) is accepted and changes nothing.
    expect((await postNotification(h, signedNotification(h, content))).status).toBe(200);
    // Out of order: a failure after the money arrived changes nothing.
    expect((await postNotification(h, signedNotification(h, { ...content, status: 'failed' }))).status).toBe(200);
    expect((await api.page(packet.id, 'alice8')).packet.status).toBe('live');
    await api.expectConserved();
    const money = await h.money();
    const report = await api.reconcile();
    expect(report.body.discrepancies).toEqual([]);
    expect(money.providers % 100).toBe(0);
  });

  it('refuses another amount (400) and an order it never made (404), changing nothing', async () => {
    const { packet, payment } = await sendPaid('alice9');
    expectError(await postNotification(h, signedNotification(h, { orderId: payment.orderId, status: 'paid', amount: '3.01' })), 400, 'invalid_request');
    expectError(await postNotification(h, signedNotification(h, { orderId: 'hb_p_nosuchpacketxxxxxxxxxxxxxxxxxxxx', status: 'paid', amount: '3.00' })), 404, 'not_found');
    expectError(await postNotification(h, signedNotification(h, { orderId: 'someone-else', status: 'paid', amount: '3.00' })), 404, 'not_found');
    expect((await api.page(packet.id, 'alice9')).packet.status).toBe('pending_payment');
    const unknownProvider = await h.call('POST', '/v1/payments/alipay/notify', { body: '{}' });
    expectError(unknownProvider, 404, 'not_found');
  });

  it('money that arrives for a cancelled packet is credited to its sender, once', async () => {
    const { packet, payment } = await sendPaid('alice10');
    const content = { orderId: payment.orderId, amount: '3.00' };
    expect((await postNotification(h, signedNotification(h, { ...content, status: 'failed' }))).status).toBe(200);
    expect((await api.page(packet.id, 'alice10')).packet.status).toBe('cancelled');
    expect((await postNotification(h, signedNotification(h, { ...content, status: 'paid' }))).status).toBe(200);
    expect((await postNotification(h, signedNotification(h, { ...content, status: 'paid' }))).status).toBe(200);
    await h.settle();
    expect(await wallet('alice10')).toEqual({ userId: 'alice10', balance: '3.00', pending: '0.00' });
    expect((await api.page(packet.id, 'alice10')).packet.status).toBe('cancelled');
    await api.expectConserved();
  });
});

describe('bad input on the payment routes', () => {
  it('is a 4xx with a clear message and changes nothing', async () => {
    const base = { type: 'group_lucky', targetId: 'g1', count: 3, amount: '3.00' };
    for (const payWith of ['paypal', 5, null, 'SANDBOX']) {
      const reply = await h.call('POST', '/v1/packets', { user: 'alice11', body: { ...base, payWith }, headers: { 'idempotency-key': api.newKey() } });
      expectError(reply, 400, 'invalid_request');
    }
    const { packet } = await sendPaid('alice11');
    expectError(await forwardReturn(h, packet.id, 'alice11', 'x'.repeat(4097)), 400, 'invalid_request');
    expectError(await forwardReturn(h, 'p_not-a-real-packet', 'alice11', 'x'), 404, 'not_found');
    expectError(await h.call('POST', `/v1/packets/${packet.id}/payment/return`, { user: 'alice11', body: 'not json' }), 400, 'invalid_request');
    expectError(await postNotification(h, { body: 'not json', headers: { 'content-type': 'application/json' } }), 401, 'unauthorized');
    expectError(await postNotification(h, { body: JSON.stringify({ orderId: 'x'.repeat(20_000) }), headers: { 'content-type': 'application/json' } }), 413, 'payload_too_large');
    expect((await api.page(packet.id, 'alice11')).packet.status).toBe('pending_payment');
    // A harness without a provider refuses payWith sandbox in words, not with a 500.
    const plain = await startHarness();
    try {
      const reply = await plain.call('POST', '/v1/packets', { user: 'alice11', body: { ...base, payWith: 'sandbox' }, headers: { 'idempotency-key': 'plain-1' } });
      expectError(reply, 400, 'invalid_request');
      expect(reply.body.error.message).toContain('payWith');
    } finally {
      await plain.stop();
    }
    await api.expectConserved();
  });
});
