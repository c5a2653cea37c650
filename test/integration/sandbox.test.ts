// Proves the sandbox payment provider of API.md ("Payments through a provider") over real HTTP:
// the sandbox served by @hono/node-server, a real node:http receiver as the merchant's notifyUrl,
// and SandboxProvider as the engine's client. Orders are idempotent by orderId; every outcome and
// notify mode does what the contract says, with notifications signed so that verifyNotification
// accepts them and rejects any forged, tampered or stale one; unanswered deliveries are retried,
// survive a restart and never block one another; bad requests are 4xx, never 500.
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NOTIFICATION_WINDOW_MS } from '../../src/payments/provider.js';
import { createSandbox, SANDBOX_DEV_MERCHANT_KEY, type Sandbox, type SandboxOptions } from '../../src/payments/sandbox/index.js';
import { backoffDelayMs } from '../../src/payments/sandbox/notifier.js';
import { fetchSandboxPublicKey, SandboxProvider, SandboxRequestError } from '../../src/payments/sandbox-provider.js';
import { exportPrivateKey, exportPublicKey, generateSigningKeyPair, signNotification } from '../../src/payments/signing.js';

const silent = pino({ level: 'silent' });
const MERCHANT_KEY = 'test-merchant-key';
const DELAYED_NOTIFY_MS = 400;
/** Long enough for a notification sent "at once" to have arrived on loopback many times over. */
const QUIET_MS = 300;
const providerKeys = generateSigningKeyPair();

// --- helpers ---------------------------------------------------------------------------------

interface Received {
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  readonly atMs: number;
}

/** What the receiver answers to its n-th request (0-based): a status, or 'hang' (never answers). */
type Answer = (index: number) => number | 'hang';

interface Receiver {
  readonly url: string;
  readonly received: Received[];
  answer: Answer;
  close(): Promise<void>;
}

const receivers: Receiver[] = [];

/** A merchant's notify endpoint: records every request, answers as told. */
async function startReceiver(answer: Answer = () => 200): Promise<Receiver> {
  const hanging: ServerResponse[] = [];
  const receiver: Receiver = {
    url: '',
    received: [],
    answer,
    close: async () => {
      for (const response of hanging) response.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const index = receiver.received.length;
      receiver.received.push({ headers: request.headers, body: Buffer.concat(chunks).toString('utf8'), atMs: Date.now() });
      const status = receiver.answer(index);
      if (status === 'hang') hanging.push(response);
      else response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ code: status === 200 ? 'SUCCESS' : 'FAIL' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  (receiver as { url: string }).url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/notify`;
  receivers.push(receiver);
  return receiver;
}

async function listen(fetch: (request: Request) => Response | Promise<Response>): Promise<{ url: string; server: ServerType }> {
  const server = await new Promise<ServerType>((resolve) => {
    const started = serve({ fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(started));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

const stopServer = (server: ServerType) =>
  new Promise<void>((resolve) => {
    (server as { closeAllConnections?: () => void }).closeAllConnections?.();
    server.close(() => resolve());
  });

interface Running {
  readonly sandbox: Sandbox;
  readonly url: string;
  readonly provider: SandboxProvider;
  stop(): Promise<void>;
}

async function startSandbox(options: Partial<SandboxOptions> = {}): Promise<Running> {
  const sandbox = createSandbox({
    dataDir: 'memory',
    merchantKey: MERCHANT_KEY,
    privateKey: exportPrivateKey(providerKeys.privateKey),
    delayedNotifyMs: DELAYED_NOTIFY_MS,
    retry: { firstDelayMs: 30, maxDelayMs: 120, attemptsMax: 5 },
    notifyTimeoutMs: 300,
    logger: silent,
    ...options,
  });
  const { url, server } = await listen(sandbox.app.fetch);
  const provider = new SandboxProvider({ baseUrl: url, merchantKey: MERCHANT_KEY, publicKey: sandbox.publicKeyBase64, timeoutMs: 2_000 });
  return { sandbox, url, provider, stop: async () => { await sandbox.close(); await stopServer(server); } };
}

async function call(method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const response = await fetch(url, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text) };
}

const merchant = { authorization: `Bearer ${MERCHANT_KEY}` };

async function waitUntil(what: string, condition: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let orderSequence = 0;
const nextOrderId = () => `order-${process.pid}-${++orderSequence}`;
const inMinutes = (minutes: number) => new Date(Date.now() + minutes * 60_000).toISOString();

function orderBody(notifyUrl: string, overrides: Record<string, unknown> = {}) {
  return { orderId: nextOrderId(), amount: '20.00', description: 'a red packet', notifyUrl, expiresAt: inMinutes(15), ...overrides };
}

/** Creates an order and pays it; answers the pay call and the order. */
async function createAndPay(running: Running, notifyUrl: string, outcome: string, notify?: string) {
  const created = await call('POST', `${running.url}/v1/orders`, orderBody(notifyUrl), merchant);
  expect(created.status).toBe(201);
  const paid = await call('POST', `${running.url}/v1/pay`, { orderId: created.body.orderId, payToken: created.body.payToken, outcome, ...(notify === undefined ? {} : { notify }) });
  return { created: created.body, paid };
}

/** The receiver's view of headers as verifyNotification wants them. */
const headersOf = (received: Received) => (name: string) => {
  const value = received.headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
};

// --- the suite -------------------------------------------------------------------------------

let running: Running;
beforeAll(async () => {
  running = await startSandbox();
});
afterAll(async () => {
  await running.stop();
});
afterEach(async () => {
  for (const receiver of receivers.splice(0)) await receiver.close();
});

describe('orders', () => {
  it('create answers 201 unpaid; the same terms again find the same order (200, same payToken); other terms are 409', async () => {
    const receiver = await startReceiver();
    const body = orderBody(receiver.url);
    const first = await call('POST', `${running.url}/v1/orders`, body, merchant);
    expect(first.status).toBe(201);
    expect(first.body).toEqual({ orderId: body.orderId, payToken: expect.any(String), amount: '20.00', expiresAt: new Date(body.expiresAt).toISOString(), status: 'unpaid' });

    const again = await call('POST', `${running.url}/v1/orders`, body, merchant);
    expect(again).toEqual({ status: 200, body: first.body });

    for (const changed of [{ amount: '20.01' }, { description: 'another' }, { notifyUrl: `${receiver.url}/other` }, { expiresAt: inMinutes(16) }]) {
      const conflict = await call('POST', `${running.url}/v1/orders`, { ...body, ...changed }, merchant);
      expect(conflict.status).toBe(409);
      expect(conflict.body.error.code).toBe('idempotency_conflict');
      expect(conflict.body.error.message).toContain(Object.keys(changed)[0]);
    }
  });

  it('SandboxProvider.createOrder maps the answer, is idempotent, and rejects a conflict with its code', async () => {
    const request = { orderId: nextOrderId(), amountFen: 1234, description: 'provider', notifyUrl: 'http://127.0.0.1:9/notify', expiresAtMs: Date.now() + 600_000 };
    const created = await running.provider.createOrder(request);
    expect(created).toEqual({ orderId: request.orderId, payToken: expect.any(String), amountFen: 1234, expiresAtMs: request.expiresAtMs });
    expect((await running.provider.createOrder(request)).payToken).toBe(created.payToken);
    const refused = await running.provider.createOrder({ ...request, amountFen: 1235 }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(SandboxRequestError);
    expect(refused).toMatchObject({ status: 409, code: 'idempotency_conflict', message: expect.stringContaining(request.orderId) });
  });

  it('query reports status, amount, closed and the transactionId once paid; an unknown order is 404', async () => {
    const receiver = await startReceiver();
    const created = await call('POST', `${running.url}/v1/orders`, orderBody(receiver.url, { amount: '0.01' }), merchant);
    expect(await call('GET', `${running.url}/v1/orders/${created.body.orderId}`, undefined, merchant)).toEqual({
      status: 200,
      body: { orderId: created.body.orderId, status: 'unpaid', amount: '0.01', closed: false },
    });
    expect(await running.provider.queryOrder(created.body.orderId)).toEqual({ orderId: created.body.orderId, status: 'unpaid', amountFen: 1, closed: false });
    await call('POST', `${running.url}/v1/pay`, { orderId: created.body.orderId, payToken: created.body.payToken, outcome: 'success', notify: 'never' });
    const paid = await call('GET', `${running.url}/v1/orders/${created.body.orderId}`, undefined, merchant);
    expect(paid.body).toEqual({ orderId: created.body.orderId, status: 'paid', amount: '0.01', closed: false, transactionId: expect.stringMatching(/^sbx_/) });

    const unknown = await call('GET', `${running.url}/v1/orders/no-such-order`, undefined, merchant);
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('not_found');
    await expect(running.provider.queryOrder('no-such-order')).rejects.toMatchObject({ status: 404, code: 'not_found' });
  });

  it('close: an unpaid order becomes failed and closed and can no longer be paid; closing again changes nothing', async () => {
    const receiver = await startReceiver();
    const created = await call('POST', `${running.url}/v1/orders`, orderBody(receiver.url), merchant);
    const closed = await call('POST', `${running.url}/v1/orders/${created.body.orderId}/close`, undefined, merchant);
    expect(closed).toEqual({ status: 200, body: { orderId: created.body.orderId, status: 'failed', amount: '20.00', closed: true } });
    expect(await running.provider.closeOrder(created.body.orderId)).toEqual({ orderId: created.body.orderId, status: 'failed', amountFen: 2000, closed: true });

    const pay = await call('POST', `${running.url}/v1/pay`, { orderId: created.body.orderId, payToken: created.body.payToken, outcome: 'success' });
    expect(pay.status).toBe(409);
    expect(pay.body.error.code).toBe('order_not_payable');
    await sleep(QUIET_MS);
    expect(receiver.received).toEqual([]);
  });

  it('close: a paid order stays paid (200, as it is)', async () => {
    const receiver = await startReceiver();
    const { created } = await createAndPay(running, receiver.url, 'success', 'never');
    const closed = await running.provider.closeOrder(created.orderId);
    expect(closed).toEqual({ orderId: created.orderId, status: 'paid', amountFen: 2000, closed: false });
    expect((await running.provider.queryOrder(created.orderId)).status).toBe('paid');
  });
});

describe('pay and notify', () => {
  it('success/normal: the return verifies as success; one signed "paid" notification arrives at once and verifies', async () => {
    const receiver = await startReceiver();
    const paidAtMs = Date.now();
    const { created, paid } = await createAndPay(running, receiver.url, 'success');
    expect(paid.status).toBe(200);
    expect(running.provider.verifyReturn(paid.body.returnPayload)).toEqual({ ok: true, value: { orderId: created.orderId, outcome: 'success', amountFen: 2000 } });

    await waitUntil('the notification', () => receiver.received.length === 1);
    const [notification] = receiver.received as [Received];
    expect(notification.headers['content-type']).toBe('application/json');
    expect(notification.headers['x-sandbox-timestamp']).toMatch(/^[0-9]+$/);
    const verdict = running.provider.verifyNotification(headersOf(notification), notification.body, Date.now());
    const state = await running.provider.queryOrder(created.orderId);
    expect(verdict).toEqual({
      ok: true,
      value: {
        orderId: created.orderId,
        status: 'paid',
        amountFen: 2000,
        transactionId: (await call('GET', `${running.url}/v1/orders/${created.orderId}`, undefined, merchant)).body.transactionId,
        nonce: notification.headers['x-sandbox-nonce'],
        timestampMs: Number(notification.headers['x-sandbox-timestamp']) * 1000,
      },
    });
    expect(JSON.parse(notification.body)).toEqual({ orderId: created.orderId, transactionId: expect.any(String), status: 'paid', amount: '20.00', at: expect.any(String) });
    expect(Date.parse(JSON.parse(notification.body).at)).toBeGreaterThanOrEqual(paidAtMs - 1);
    expect(state.status).toBe('paid');

    await sleep(QUIET_MS);
    expect(receiver.received).toHaveLength(1);
    expect(running.sandbox.pendingDeliveries()).toBe(0);
  });

  it('duplicate: two separate deliveries of the same body, each with its own nonce and valid signature', async () => {
    const receiver = await startReceiver();
    await createAndPay(running, receiver.url, 'success', 'duplicate');
    await waitUntil('two notifications', () => receiver.received.length === 2);
    const [first, second] = receiver.received as [Received, Received];
    expect(first.body).toBe(second.body);
    expect(first.headers['x-sandbox-nonce']).not.toBe(second.headers['x-sandbox-nonce']);
    for (const notification of receiver.received) expect(running.provider.verifyNotification(headersOf(notification), notification.body, Date.now()).ok).toBe(true);
    await sleep(QUIET_MS);
    expect(receiver.received).toHaveLength(2);
  });

  it('never: no notification at all, nothing pending; the order is still paid', async () => {
    const receiver = await startReceiver();
    const { created, paid } = await createAndPay(running, receiver.url, 'success', 'never');
    expect(paid.status).toBe(200);
    expect(running.sandbox.pendingDeliveries()).toBe(0);
    await sleep(QUIET_MS);
    expect(receiver.received).toEqual([]);
    expect((await running.provider.queryOrder(created.orderId)).status).toBe('paid');
  });

  it('delayed: the notification comes, but not before delayedNotifyMs', async () => {
    const receiver = await startReceiver();
    const before = Date.now();
    await createAndPay(running, receiver.url, 'success', 'delayed');
    await sleep(DELAYED_NOTIFY_MS / 2);
    expect(receiver.received).toEqual([]);
    await waitUntil('the delayed notification', () => receiver.received.length === 1);
    expect(receiver.received[0]!.atMs - before).toBeGreaterThanOrEqual(DELAYED_NOTIFY_MS - 5);
    expect(JSON.parse(receiver.received[0]!.body).status).toBe('paid');
  });

  it('fail: the return says fail, the notification says failed, the order is failed', async () => {
    const receiver = await startReceiver();
    const { created, paid } = await createAndPay(running, receiver.url, 'fail');
    expect(running.provider.verifyReturn(paid.body.returnPayload)).toEqual({ ok: true, value: { orderId: created.orderId, outcome: 'fail', amountFen: 2000 } });
    await waitUntil('the notification', () => receiver.received.length === 1);
    const verdict = running.provider.verifyNotification(headersOf(receiver.received[0]!), receiver.received[0]!.body, Date.now());
    expect(verdict).toMatchObject({ ok: true, value: { orderId: created.orderId, status: 'failed' } });
    expect(await running.provider.queryOrder(created.orderId)).toMatchObject({ status: 'failed', closed: false });
  });

  it('reversed: the return verifies as success, yet the notification says failed and so does the query', async () => {
    const receiver = await startReceiver();
    const { created, paid } = await createAndPay(running, receiver.url, 'reversed');
    expect(running.provider.verifyReturn(paid.body.returnPayload)).toEqual({ ok: true, value: { orderId: created.orderId, outcome: 'success', amountFen: 2000 } });
    await waitUntil('the notification', () => receiver.received.length === 1);
    const verdict = running.provider.verifyNotification(headersOf(receiver.received[0]!), receiver.received[0]!.body, Date.now());
    expect(verdict).toMatchObject({ ok: true, value: { orderId: created.orderId, status: 'failed', amountFen: 2000 } });
    expect((await running.provider.queryOrder(created.orderId)).status).toBe('failed');
  });

  it('a paid order cannot be paid again (409), nor one past its expiresAt', async () => {
    const receiver = await startReceiver();
    const { created } = await createAndPay(running, receiver.url, 'success', 'never');
    const again = await call('POST', `${running.url}/v1/pay`, { orderId: created.orderId, payToken: created.payToken, outcome: 'fail', notify: 'never' });
    expect(again.status).toBe(409);
    expect(again.body.error).toEqual({ code: 'order_not_payable', message: expect.stringContaining('paid') });
    expect((await running.provider.queryOrder(created.orderId)).status).toBe('paid');

    // Past its expiresAt (the sandbox's clock moved on), an unpaid order is no longer payable.
    let skewMs = 0;
    const clocked = await startSandbox({ now: () => Date.now() + skewMs });
    try {
      const soon = await call('POST', `${clocked.url}/v1/orders`, orderBody(receiver.url, { expiresAt: inMinutes(1) }), merchant);
      expect(soon.status).toBe(201);
      skewMs = 61_000;
      const late = await call('POST', `${clocked.url}/v1/pay`, { orderId: soon.body.orderId, payToken: soon.body.payToken, outcome: 'success' });
      expect(late.status).toBe(409);
      expect(late.body.error).toEqual({ code: 'order_not_payable', message: expect.stringContaining('expired') });
      expect((await clocked.provider.queryOrder(soon.body.orderId)).status).toBe('unpaid');
    } finally {
      await clocked.stop();
    }
  });
});

describe('delivery', () => {
  it('a notification answered 500 is retried, signed anew each time, until answered 200', async () => {
    const receiver = await startReceiver((index) => (index < 2 ? 500 : 200));
    await createAndPay(running, receiver.url, 'success');
    await waitUntil('three attempts', () => receiver.received.length === 3);
    await waitUntil('the delivery done', () => running.sandbox.pendingDeliveries() === 0);
    const nonces = new Set(receiver.received.map((received) => received.headers['x-sandbox-nonce']));
    expect(nonces.size).toBe(3);
    expect(new Set(receiver.received.map((received) => received.body)).size).toBe(1);
    for (const received of receiver.received) expect(running.provider.verifyNotification(headersOf(received), received.body, Date.now()).ok).toBe(true);
    // Backoff: each retry waits at least half of its doubled delay (30 ms, then 60 ms).
    expect(receiver.received[1]!.atMs - receiver.received[0]!.atMs).toBeGreaterThanOrEqual(15 - 2);
    expect(receiver.received[2]!.atMs - receiver.received[1]!.atMs).toBeGreaterThanOrEqual(30 - 2);
    await sleep(QUIET_MS);
    expect(receiver.received).toHaveLength(3);
  });

  it('anything but 200 counts as not delivered (201, 204, 302, 404), and after attemptsMax attempts it is given up', async () => {
    const statuses = [201, 204, 302, 404, 503];
    const receiver = await startReceiver((index) => statuses[index] ?? 200);
    await createAndPay(running, receiver.url, 'success');
    await waitUntil('attemptsMax attempts', () => receiver.received.length === 5);
    await waitUntil('the delivery dropped', () => running.sandbox.pendingDeliveries() === 0);
    await sleep(QUIET_MS);
    expect(receiver.received).toHaveLength(5);
  });

  it('a receiver that does not answer in time is retried; meanwhile other deliveries are not held up', async () => {
    const timeoutMs = 800;
    const isolated = await startSandbox({ notifyTimeoutMs: timeoutMs });
    try {
      const slow = await startReceiver((index) => (index === 0 ? 'hang' : 200));
      const fast = await startReceiver();
      await createAndPay(isolated, slow.url, 'success');
      await waitUntil('the first, hanging attempt', () => slow.received.length === 1);
      await createAndPay(isolated, fast.url, 'success');
      await waitUntil('the other delivery', () => fast.received.length === 1);
      // Delivered while the first attempt was still hanging, not after its timeout.
      expect(slow.received).toHaveLength(1);
      expect(fast.received[0]!.atMs - slow.received[0]!.atMs).toBeLessThan(timeoutMs);
      // The hanging attempt times out and is tried again.
      await waitUntil('the retry after the timeout', () => slow.received.length === 2);
      expect(slow.received[1]!.atMs - slow.received[0]!.atMs).toBeGreaterThanOrEqual(timeoutMs - 5);
      await waitUntil('both done', () => isolated.sandbox.pendingDeliveries() === 0);
    } finally {
      await isolated.stop();
    }
  });

  it('a notifyUrl where nobody listens is retried like any failure', async () => {
    const receiver = await startReceiver();
    const url = receiver.url;
    await receiver.close();
    receivers.splice(receivers.indexOf(receiver), 1);
    const isolated = await startSandbox({ retry: { firstDelayMs: 20, maxDelayMs: 40, attemptsMax: 3 } });
    try {
      await createAndPay(isolated, url, 'success');
      expect(isolated.sandbox.pendingDeliveries()).toBe(1);
      await waitUntil('given up after three connection errors', () => isolated.sandbox.pendingDeliveries() === 0);
    } finally {
      await isolated.stop();
    }
  });

  it('backoff doubles from firstDelayMs, is capped at maxDelayMs, and jitters within the upper half', () => {
    const retry = { firstDelayMs: 1_000, maxDelayMs: 60_000, attemptsMax: 20 };
    expect([1, 2, 3, 4].map((attempts) => backoffDelayMs(attempts, retry, () => 1))).toEqual([1_000, 2_000, 4_000, 8_000]);
    expect(backoffDelayMs(1, retry, () => 0)).toBe(500);
    expect(backoffDelayMs(10, retry, () => 1)).toBe(60_000);
    expect(backoffDelayMs(19, retry, () => 0)).toBe(30_000);
    expect(backoffDelayMs(1_000, retry, () => 1)).toBe(60_000);
  });

  it('close() stops promptly even with an attempt in flight, which stays pending', async () => {
    const receiver = await startReceiver(() => 'hang');
    const isolated = await startSandbox({ notifyTimeoutMs: 5_000 });
    await createAndPay(isolated, receiver.url, 'success');
    await waitUntil('the attempt in flight', () => receiver.received.length === 1);
    const started = Date.now();
    await isolated.stop();
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(isolated.sandbox.pendingDeliveries()).toBe(1);
    const after = await isolated.sandbox.app.request('/healthz');
    expect(after.status).toBe(503);
  });
});

describe('verifyNotification refuses what the sandbox did not sign, just now, as sent', () => {
  let notification: Received;
  beforeAll(async () => {
    const receiver = await startReceiver();
    await createAndPay(running, receiver.url, 'success');
    await waitUntil('the notification', () => receiver.received.length === 1);
    notification = receiver.received[0]!;
  });

  const withHeaders = (overrides: Record<string, string | undefined>) => (name: string) =>
    name.toLowerCase() in overrides ? overrides[name.toLowerCase()] : headersOf(notification)(name);
  const refused = (verdict: { ok: true } | { ok: false; reason: string }, reason: RegExp) => {
    expect(verdict.ok).toBe(false);
    if (!verdict.ok) expect(verdict.reason).toMatch(reason);
  };

  it('accepts the genuine one (the control)', () => {
    expect(running.provider.verifyNotification(headersOf(notification), notification.body, Date.now()).ok).toBe(true);
  });

  it('a tampered body, nonce, timestamp or signature', () => {
    const body = JSON.parse(notification.body);
    refused(running.provider.verifyNotification(headersOf(notification), JSON.stringify({ ...body, amount: '2000.00' }), Date.now()), /signature/);
    refused(running.provider.verifyNotification(headersOf(notification), notification.body.replace('"paid"', '"failed"'), Date.now()), /signature/);
    refused(running.provider.verifyNotification(headersOf(notification), `${notification.body} `, Date.now()), /signature/);
    refused(running.provider.verifyNotification(withHeaders({ 'x-sandbox-nonce': 'ffffffffffffffffffffffffffffffff' }), notification.body, Date.now()), /signature/);
    const timestamp = Number(notification.headers['x-sandbox-timestamp']);
    refused(running.provider.verifyNotification(withHeaders({ 'x-sandbox-timestamp': String(timestamp + 1) }), notification.body, Date.now()), /signature/);
    const signature = Buffer.from(String(notification.headers['x-sandbox-signature']), 'base64');
    signature[10]! ^= 0x40;
    refused(running.provider.verifyNotification(withHeaders({ 'x-sandbox-signature': signature.toString('base64') }), notification.body, Date.now()), /signature/);
  });

  it('one forged with another key, however well formed', () => {
    const forger = generateSigningKeyPair();
    const timestamp = String(Math.floor(Date.now() / 1000));
    const nonce = 'forgedforgedforged';
    const headers = { 'x-sandbox-timestamp': timestamp, 'x-sandbox-nonce': nonce, 'x-sandbox-signature': signNotification(forger.privateKey, timestamp, nonce, notification.body) };
    refused(running.provider.verifyNotification(withHeaders(headers), notification.body, Date.now()), /signature/);
  });

  it('a stale or future timestamp, even correctly signed', () => {
    const sentMs = Number(notification.headers['x-sandbox-timestamp']) * 1000;
    expect(running.provider.verifyNotification(headersOf(notification), notification.body, sentMs + NOTIFICATION_WINDOW_MS).ok).toBe(true);
    refused(running.provider.verifyNotification(headersOf(notification), notification.body, sentMs + NOTIFICATION_WINDOW_MS + 1_000), /minutes/);
    refused(running.provider.verifyNotification(headersOf(notification), notification.body, sentMs - NOTIFICATION_WINDOW_MS - 1_000), /minutes/);
  });

  it('a signed body of the wrong shape, and missing or malformed headers', () => {
    // Signed with the sandbox's own key (the suite passed it in), so only the shape is wrong.
    const sign = (body: string) => {
      const timestamp = String(Math.floor(Date.now() / 1000));
      const nonce = 'abcdefgh12345678';
      return withHeaders({ 'x-sandbox-timestamp': timestamp, 'x-sandbox-nonce': nonce, 'x-sandbox-signature': signNotification(providerKeys.privateKey, timestamp, nonce, body) });
    };
    const body = JSON.parse(notification.body);
    for (const wrong of [{ ...body, amount: 20 }, { ...body, amount: '0.00' }, { ...body, amount: '1.234' }, { ...body, status: 'refunded' }, { ...body, orderId: undefined }, [body]]) {
      const text = JSON.stringify(wrong);
      refused(running.provider.verifyNotification(sign(text), text, Date.now()), /shape/);
    }
    refused(running.provider.verifyNotification(sign('not json'), 'not json', Date.now()), /not JSON/);
    for (const name of ['x-sandbox-timestamp', 'x-sandbox-nonce', 'x-sandbox-signature']) {
      refused(running.provider.verifyNotification(withHeaders({ [name]: undefined }), notification.body, Date.now()), /missing/);
    }
    refused(running.provider.verifyNotification(withHeaders({ 'x-sandbox-timestamp': '1.5e9' }), notification.body, Date.now()), /unix seconds/);
    refused(running.provider.verifyNotification(withHeaders({ 'x-sandbox-nonce': 'a\nb' }), notification.body, Date.now()), /Nonce/);
    refused(running.provider.verifyNotification(() => { throw new Error('broken headers'); }, notification.body, Date.now()), /broken headers/);
    refused(running.provider.verifyNotification(headersOf(notification), undefined as unknown as string, Date.now()), /body/);
  });

  it('verifyReturn refuses tampered, foreign and garbage payloads without throwing', async () => {
    const receiver = await startReceiver();
    const { paid } = await createAndPay(running, receiver.url, 'fail', 'never');
    const payload: string = paid.body.returnPayload;
    const [encoded, signature] = payload.split('.') as [string, string];
    const content = JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8'));
    const flipped = Buffer.from(JSON.stringify({ ...content, outcome: 'success' })).toString('base64url');
    expect(running.provider.verifyReturn(`${flipped}.${signature}`).ok).toBe(false);
    const foreign = createSandbox({ dataDir: 'memory', merchantKey: 'x', logger: silent });
    const other = new SandboxProvider({ baseUrl: running.url, merchantKey: MERCHANT_KEY, publicKey: foreign.publicKey });
    expect(other.verifyReturn(payload).ok).toBe(false);
    await foreign.close();
    for (const garbage of ['', '.', 'x.y', `${payload}x`, null, 42, {}]) expect(running.provider.verifyReturn(garbage as string).ok).toBe(false);
  });
});

describe('refusals are 4xx with the error shape, never 500', () => {
  const expectError = (answer: { status: number; body: any }, status: number, code: string) => {
    expect(answer.status).toBe(status);
    expect(answer.body).toEqual({ error: { code, message: expect.any(String) } });
  };

  it('a missing or wrong merchant key is 401 on every merchant route', async () => {
    const created = await call('POST', `${running.url}/v1/orders`, orderBody('http://127.0.0.1:9/n'), merchant);
    for (const headers of [{} as Record<string, string>, { authorization: 'Bearer wrong' }, { authorization: MERCHANT_KEY }, { authorization: `Basic ${MERCHANT_KEY}` }, { authorization: `Bearer ${MERCHANT_KEY}x` }]) {
      expectError(await call('POST', `${running.url}/v1/orders`, orderBody('http://127.0.0.1:9/n'), headers), 401, 'unauthorized');
      expectError(await call('GET', `${running.url}/v1/orders/${created.body.orderId}`, undefined, headers), 401, 'unauthorized');
      expectError(await call('POST', `${running.url}/v1/orders/${created.body.orderId}/close`, undefined, headers), 401, 'unauthorized');
    }
    expect((await running.provider.queryOrder(created.body.orderId)).status).toBe('unpaid');
    const wrongKey = new SandboxProvider({ baseUrl: running.url, merchantKey: 'wrong', publicKey: running.sandbox.publicKey });
    await expect(wrongKey.queryOrder(created.body.orderId)).rejects.toMatchObject({ status: 401, code: 'unauthorized' });
  });

  it('bad create bodies are 400 invalid_request naming the field', async () => {
    const valid = orderBody('http://127.0.0.1:9/n');
    const cases: Array<[unknown, RegExp]> = [
      ['not json', /JSON/],
      ['[1,2', /JSON/],
      [[], /body/],
      [null, /body/],
      [{}, /orderId/],
      [{ ...valid, orderId: '' }, /orderId/],
      [{ ...valid, orderId: 'x'.repeat(65) }, /orderId/],
      [{ ...valid, orderId: 'has space' }, /orderId/],
      [{ ...valid, orderId: 12 }, /orderId/],
      [{ ...valid, amount: 20 }, /amount/],
      [{ ...valid, amount: '0' }, /amount.*0\.01/],
      [{ ...valid, amount: '0.00' }, /amount/],
      [{ ...valid, amount: '1.234' }, /amount/],
      [{ ...valid, amount: '-1' }, /amount/],
      [{ ...valid, amount: '1e3' }, /amount/],
      [{ ...valid, description: 'x'.repeat(201) }, /description/],
      [{ ...valid, description: 7 }, /description/],
      [{ ...valid, notifyUrl: 'ftp://example.com/n' }, /notifyUrl/],
      [{ ...valid, notifyUrl: '/relative' }, /notifyUrl/],
      [{ ...valid, notifyUrl: `http://x/${'a'.repeat(3000)}` }, /notifyUrl/],
      [{ ...valid, expiresAt: 'tomorrow' }, /expiresAt/],
      [{ ...valid, expiresAt: 1767225600000 }, /expiresAt/],
      [{ ...valid, expiresAt: new Date(Date.now() - 1_000).toISOString() }, /expiresAt.*future/],
    ];
    for (const [body, message] of cases) {
      const answer = await call('POST', `${running.url}/v1/orders`, typeof body === 'string' ? body : JSON.stringify(body), merchant);
      expectError(answer, 400, 'invalid_request');
      expect(answer.body.error.message).toMatch(message);
    }
    // 200 characters (code points, 汉字 included) are fine.
    expect((await call('POST', `${running.url}/v1/orders`, { ...valid, description: '红'.repeat(200) }, merchant)).status).toBe(201);
    expectError(await call('POST', `${running.url}/v1/orders`, { ...valid, orderId: nextOrderId(), description: 'x'.repeat(20_000) }, merchant), 413, 'payload_too_large');
    expectError(await call('GET', `${running.url}/v1/orders/${encodeURIComponent('bad id!')}`, undefined, merchant), 400, 'invalid_request');
  });

  it('pay: unknown order 404, wrong payToken 403, bad bodies 400', async () => {
    const created = await call('POST', `${running.url}/v1/orders`, orderBody('http://127.0.0.1:9/n'), merchant);
    const { orderId, payToken } = created.body;
    expectError(await call('POST', `${running.url}/v1/pay`, { orderId: 'unknown-order', payToken, outcome: 'success' }), 404, 'not_found');
    expectError(await call('POST', `${running.url}/v1/pay`, { orderId, payToken: `${payToken}x`, outcome: 'success' }), 403, 'forbidden');
    expectError(await call('POST', `${running.url}/v1/pay`, { orderId, payToken: 'short', outcome: 'success' }), 403, 'forbidden');
    for (const body of [{ orderId, payToken }, { orderId, payToken, outcome: 'maybe' }, { orderId, payToken, outcome: 'success', notify: 'sometimes' }, { orderId, outcome: 'success' }, { payToken, outcome: 'success' }, 'x']) {
      expectError(await call('POST', `${running.url}/v1/pay`, body), 400, 'invalid_request');
    }
    expect((await running.provider.queryOrder(orderId)).status).toBe('unpaid');
    expectError(await call('GET', `${running.url}/v1/nothing-here`), 404, 'not_found');
  });

  it('the provider rejects with a useful message when the sandbox cannot be reached', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise((resolve) => server.close(resolve));
    const unreachable = new SandboxProvider({ baseUrl: `http://127.0.0.1:${port}`, merchantKey: MERCHANT_KEY, publicKey: running.sandbox.publicKeyBase64, timeoutMs: 500 });
    const error = await unreachable.queryOrder('order-x').catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(SandboxRequestError);
    expect((error as Error).message).toMatch(/queryOrder order-x.*not reached/);
    await expect(fetchSandboxPublicKey(`http://127.0.0.1:${port}`, 500)).rejects.toThrow(/not reached/);
  });
});

describe('mounted under a prefix, as the engine does', () => {
  it('serves the same routes under /sandbox, with the key pinned from GET /v1/public-key', async () => {
    const sandbox = createSandbox({ dataDir: 'memory', merchantKey: SANDBOX_DEV_MERCHANT_KEY, logger: silent });
    const engine = new Hono();
    engine.get('/healthz', (c) => c.text('engine'));
    engine.route('/sandbox', sandbox.app);
    const { url, server } = await listen(engine.fetch);
    try {
      const receiver = await startReceiver();
      const publicKey = await fetchSandboxPublicKey(`${url}/sandbox/`);
      expect(exportPublicKey(publicKey)).toBe(sandbox.publicKeyBase64);
      expect((await call('GET', `${url}/sandbox/v1/public-key`)).body).toEqual({ publicKey: sandbox.publicKeyBase64, algorithm: 'ed25519' });
      expect((await call('GET', `${url}/sandbox/healthz`)).body).toEqual({ status: 'ok' });
      const provider = new SandboxProvider({ baseUrl: `${url}/sandbox`, merchantKey: SANDBOX_DEV_MERCHANT_KEY, publicKey });
      const created = await provider.createOrder({ orderId: nextOrderId(), amountFen: 500, description: 'mounted', notifyUrl: receiver.url, expiresAtMs: Date.now() + 60_000 });
      const paid = await call('POST', `${url}/sandbox/v1/pay`, { orderId: created.orderId, payToken: created.payToken, outcome: 'success' });
      expect(provider.verifyReturn(paid.body.returnPayload)).toMatchObject({ ok: true, value: { outcome: 'success', amountFen: 500 } });
      await waitUntil('the notification', () => receiver.received.length === 1);
      expect(provider.verifyNotification(headersOf(receiver.received[0]!), receiver.received[0]!.body, Date.now())).toMatchObject({ ok: true, value: { status: 'paid' } });
      // Its refusals keep their shape when mounted.
      const bad = await call('POST', `${url}/sandbox/v1/orders`, '{', { authorization: `Bearer ${SANDBOX_DEV_MERCHANT_KEY}` });
      expect(bad).toEqual({ status: 400, body: { error: { code: 'invalid_request', message: expect.any(String) } } });
      expect((await call('POST', `${url}/sandbox/v1/orders`, {})).status).toBe(401);
    } finally {
      await sandbox.close();
      await stopServer(server);
    }
  });
});

describe('restart', () => {
  let folder: string;
  beforeAll(() => {
    folder = mkdtempSync(join(tmpdir(), 'hongbao-sandbox-'));
  });
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  it('keeps its key and orders in the folder, and resumes a delivery not yet answered 200', async () => {
    const receiver = await startReceiver(() => 500);
    const options = { dataDir: folder, privateKey: undefined, retry: { firstDelayMs: 20, maxDelayMs: 50, attemptsMax: 1_000 } };
    const first = await startSandbox(options);
    const { created } = await createAndPay(first, receiver.url, 'success');
    await waitUntil('a refused attempt', () => receiver.received.length >= 2);
    await first.stop();
    const attemptsBefore = receiver.received.length;
    expect(first.sandbox.pendingDeliveries()).toBe(1);
    const state = JSON.parse(readFileSync(join(folder, 'sandbox', 'state.json'), 'utf8'));
    expect(state.deliveries).toHaveLength(1);
    expect(state.orders.map((order: { orderId: string }) => order.orderId)).toEqual([created.orderId]);

    // Stopped means stopped: no attempt while it is down.
    await sleep(150);
    expect(receiver.received).toHaveLength(attemptsBefore);

    receiver.answer = () => 200;
    const second = await startSandbox(options);
    try {
      expect(second.sandbox.publicKeyBase64).toBe(first.sandbox.publicKeyBase64);
      expect(second.sandbox.publicKeyBase64).not.toBe(exportPublicKey(providerKeys.publicKey));
      await waitUntil('the resumed delivery', () => second.sandbox.pendingDeliveries() === 0);
      const delivered = receiver.received.at(-1)!;
      expect(receiver.received.length).toBe(attemptsBefore + 1);
      expect(second.provider.verifyNotification(headersOf(delivered), delivered.body, Date.now())).toMatchObject({ ok: true, value: { orderId: created.orderId, status: 'paid' } });
      expect(await second.provider.queryOrder(created.orderId)).toMatchObject({ status: 'paid', amountFen: 2000 });
      // The restarted sandbox still knows the order: it is paid, so it cannot be paid again.
      const again = await call('POST', `${second.url}/v1/pay`, { orderId: created.orderId, payToken: created.payToken, outcome: 'success' });
      expect(again.status).toBe(409);
    } finally {
      await second.stop();
    }
    expect(JSON.parse(readFileSync(join(folder, 'sandbox', 'state.json'), 'utf8')).deliveries).toEqual([]);
  });
});
