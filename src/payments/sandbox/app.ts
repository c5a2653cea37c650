// The sandbox's HTTP routes (API.md, "Payments through a provider"). Paths are relative, so the
// app works alone and mounted (engineApp.route('/sandbox', app)). Each change is made on the
// store synchronously (so two requests never interleave inside one decision), then persisted
// before the answer.
import { createHash, randomBytes, randomUUID, timingSafeEqual, type KeyObject } from 'node:crypto';
import { Hono, type MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Logger } from 'pino';
import { formatFen } from '../../money/money.js';
import { signReturnPayload } from '../signing.js';
import { errorBody, handleSandboxError, SandboxError } from './errors.js';
import type { Notifier } from './notifier.js';
import { DELIVERIES_MAX, ORDERS_MAX, type DeliveryRecord, type OrderRecord } from './records.js';
import { checkOrderId, createOrderBody, payBody, readBody, type CreateOrderBody } from './requests.js';
import type { SandboxStore } from './store.js';

/** Bodies are small JSON objects; anything bigger is refused before it is parsed. */
export const SANDBOX_BODY_BYTES_MAX = 16 * 1024;

export interface SandboxAppDependencies {
  readonly store: SandboxStore;
  readonly notifier: Notifier;
  readonly privateKey: KeyObject;
  readonly publicKeyBase64: string;
  readonly merchantKey: string;
  readonly now: () => number;
  readonly delayedNotifyMs: number;
  readonly logger: Logger;
  readonly isClosed: () => boolean;
}

const iso = (ms: number) => new Date(ms).toISOString();

const createdView = (order: OrderRecord) => ({
  orderId: order.orderId,
  payToken: order.payToken,
  amount: formatFen(order.amountFen),
  expiresAt: iso(order.expiresAtMs),
  status: order.status,
});

const stateView = (order: OrderRecord) => ({
  orderId: order.orderId,
  status: order.status,
  amount: formatFen(order.amountFen),
  closed: order.closed,
  ...(order.transactionId === undefined ? {} : { transactionId: order.transactionId }),
});

/** Names the terms of a repeated create that differ from the order's, for the 409. */
function differingTerms(order: OrderRecord, request: CreateOrderBody): string[] {
  const differing: string[] = [];
  if (order.amountFen !== request.amount) differing.push('amount');
  if (order.description !== request.description) differing.push('description');
  if (order.notifyUrl !== request.notifyUrl) differing.push('notifyUrl');
  if (order.expiresAtMs !== request.expiresAt) differing.push('expiresAt');
  return differing;
}

/** Compares digests, so neither the key's length nor its bytes leak through timing. */
function sameSecret(given: string, expected: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(expected));
}

export function sandboxApp(deps: SandboxAppDependencies): Hono {
  const { store, notifier, now, logger } = deps;
  const app = new Hono();
  app.onError((error, c) => handleSandboxError(error, c, logger));
  app.notFound((c) => c.json(errorBody('not_found', `no route ${c.req.method} ${c.req.path}`), 404));

  app.use('*', async (c, next) => {
    if (deps.isClosed()) throw new SandboxError(503, 'unavailable', 'the sandbox is stopping');
    await next();
  });
  app.use('*', bodyLimit({
    maxSize: SANDBOX_BODY_BYTES_MAX,
    onError: (c) => c.json(errorBody('payload_too_large', `request body is larger than ${SANDBOX_BODY_BYTES_MAX} bytes`), 413),
  }));

  const merchantOnly: MiddlewareHandler = async (c, next) => {
    const header = c.req.header('authorization') ?? '';
    if (!header.startsWith('Bearer ') || !sameSecret(header.slice('Bearer '.length), deps.merchantKey)) {
      c.header('WWW-Authenticate', 'Bearer');
      throw new SandboxError(401, 'unauthorized', 'the merchant key is missing or wrong (Authorization: Bearer <merchantKey>)');
    }
    await next();
  };
  app.use('/v1/orders', merchantOnly);
  app.use('/v1/orders/*', merchantOnly);

  /** Answers only once the state the answer describes is on disk. */
  const persisted = async () => {
    try {
      await store.persist();
    } catch (error) {
      throw new SandboxError(503, 'unavailable', 'the sandbox could not write its state; retry shortly', { cause: error });
    }
  };

  const orderOf = (orderId: string) => {
    const order = store.orders.get(checkOrderId(orderId));
    if (order === undefined) throw new SandboxError(404, 'not_found', `no order ${orderId}`);
    return order;
  };

  app.post('/v1/orders', async (c) => {
    const request = await readBody(c, createOrderBody);
    const existing = store.orders.get(request.orderId);
    if (existing !== undefined) {
      // The orderId is the idempotency key: the same terms find the same order, others are a conflict.
      const differing = differingTerms(existing, request);
      if (differing.length > 0) {
        throw new SandboxError(409, 'idempotency_conflict', `order ${request.orderId} exists with another ${differing.join(', ')}`);
      }
      await persisted(); // the first create may still be writing it
      return c.json(createdView(existing), 200);
    }
    if (request.expiresAt <= now()) throw new SandboxError(400, 'invalid_request', 'expiresAt: must be in the future');
    if (store.orders.size >= ORDERS_MAX) throw new SandboxError(503, 'unavailable', `the sandbox holds its maximum of ${ORDERS_MAX} orders`);
    const order: OrderRecord = {
      orderId: request.orderId,
      payToken: `pt_${randomBytes(18).toString('base64url')}`,
      amountFen: request.amount,
      description: request.description,
      notifyUrl: request.notifyUrl,
      expiresAtMs: request.expiresAt,
      createdAtMs: now(),
      status: 'unpaid',
      closed: false,
    };
    store.orders.set(order.orderId, order);
    await persisted();
    return c.json(createdView(order), 201);
  });

  app.get('/v1/orders/:orderId', (c) => c.json(stateView(orderOf(c.req.param('orderId')))));

  app.post('/v1/orders/:orderId/close', async (c) => {
    const order = orderOf(c.req.param('orderId'));
    // Only an unpaid order changes; a paid or failed one is answered as it is (closing is idempotent).
    if (order.status === 'unpaid') {
      order.status = 'failed';
      order.closed = true;
    }
    await persisted();
    return c.json(stateView(order));
  });

  app.post('/v1/pay', async (c) => {
    const request = await readBody(c, payBody);
    const order = orderOf(request.orderId);
    if (!sameSecret(request.payToken, order.payToken)) throw new SandboxError(403, 'forbidden', `the payToken is not the one of order ${order.orderId}`);
    if (order.closed) throw new SandboxError(409, 'order_not_payable', `order ${order.orderId} is closed`);
    if (order.status !== 'unpaid') throw new SandboxError(409, 'order_not_payable', `order ${order.orderId} is already ${order.status}`);
    const atMs = now();
    if (atMs >= order.expiresAtMs) throw new SandboxError(409, 'order_not_payable', `order ${order.orderId} expired at ${iso(order.expiresAtMs)}`);
    const copies = request.notify === 'never' ? 0 : request.notify === 'duplicate' ? 2 : 1;
    if (store.deliveries.size + copies > DELIVERIES_MAX) {
      throw new SandboxError(503, 'unavailable', `the sandbox holds its maximum of ${DELIVERIES_MAX} undelivered notifications`);
    }

    // `reversed`: the sheet told the payer success, then the bank refused: the order ends failed.
    order.status = request.outcome === 'success' ? 'paid' : 'failed';
    order.transactionId = `sbx_${randomBytes(12).toString('hex')}`;
    const amount = formatFen(order.amountFen);
    const body = JSON.stringify({ orderId: order.orderId, transactionId: order.transactionId, status: order.status, amount, at: iso(atMs) });
    const deliveries: DeliveryRecord[] = Array.from({ length: copies }, () => ({
      deliveryId: randomUUID(),
      orderId: order.orderId,
      notifyUrl: order.notifyUrl,
      body,
      attempts: 0,
      nextAttemptAtMs: atMs + (request.notify === 'delayed' ? deps.delayedNotifyMs : 0),
    }));
    for (const delivery of deliveries) store.deliveries.set(delivery.deliveryId, delivery);
    try {
      await persisted();
    } finally {
      // The state in memory is the truth served from now on, written or not: notify as it says.
      for (const delivery of deliveries) notifier.schedule(delivery);
    }
    const outcome = request.outcome === 'fail' ? 'fail' : 'success';
    return c.json({ returnPayload: signReturnPayload(deps.privateKey, { orderId: order.orderId, outcome, amount, at: iso(atMs) }) });
  });

  // How a dev engine pins the key, like WeChat Pay v3's platform-certificate download.
  app.get('/v1/public-key', (c) => c.json({ publicKey: deps.publicKeyBase64, algorithm: 'ed25519' }));
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  return app;
}
