// The HTTP API (API.md): a thin translation between JSON and the application service. Routes
// parse, call one use case, and render its outcome; statuses and bodies are decided here only.
import { Hono } from 'hono';
import type { Logger } from 'pino';
import type { HongbaoService } from '../app/service.js';
import { requireAdmin, requireAuth, type AuthVariables } from './auth.js';
import { limitBody } from './body-limit.js';
import { ApiError, errorBody, handleError } from './errors.js';
import { createForwarding, type ForwardingOptions } from './forward.js';
import { createHttpMetrics } from './metrics.js';
import { openApiDocument } from './openapi.js';
import { renderCluster } from './render.js';
import { packetRoutes } from './routes/packets.js';
import { paymentNotifyRoutes } from './routes/payments.js';
import { notificationRoutes } from './routes/notifications.js';
import { recordRoutes } from './routes/records.js';
import { walletRoutes } from './routes/wallet.js';

/** The open route: it takes the user's open bucket (in the service), not the request bucket. */
const OPEN_PATH = /^\/v1\/packets\/[^/]+\/open$/;

export interface AppOptions {
  readonly authSecret: string;
  readonly logger: Logger;
  /** Largest request body on the routes that take one (config.bodyBytesMax); 413 past it. */
  readonly bodyBytesMax: number;
  /** Bearer tokens must expire within this many seconds of being issued (config.tokenTtlMaxSeconds). */
  readonly tokenTtlMaxSeconds: number;
  /** Bounds of the forwards to other nodes (forward.ts); tests shorten them. */
  readonly forwarding?: ForwardingOptions;
  /** How often an idle event stream sends a keep-alive comment (tests shorten it). */
  readonly eventStreamKeepAliveMs?: number;
}

/** How long a refused (429) request is held before its answer is sent. */
export const REFUSAL_HOLD_MS = 1000;
/** Refusals held at once by one app; past it a refusal is sent at once, on a closed connection. */
export const REFUSALS_HELD_MAX = 4096;

export function createApp(service: HongbaoService, options: AppOptions) {
  let refusalsHeld = 0;
  const metrics = createHttpMetrics(service.metrics);
  const forwarding = createForwarding(service, { authSecret: options.authSecret, logger: options.logger, metrics, ...options.forwarding });
  const { bodyBytesMax } = options;
  const app = new Hono<{ Variables: AuthVariables }>();

  app.onError((error, c) => handleError(error, c, options.logger));
  app.notFound((c) => c.json(errorBody('not_found', `no route ${c.req.method} ${c.req.path}`), 404));
  app.use('*', async (c, next) => {
    const stopTimer = metrics.seconds.startTimer();
    await next();
    const labels = { method: c.req.method, route: c.req.routePath, status: String(c.res.status) };
    metrics.requests.inc(labels);
    stopTimer(labels);
  });
  app.get('/healthz', (c) => c.json({ ok: true }));
  app.get('/readyz', async (c) => {
    const readiness = await service.readiness();
    if (readiness.ready) return c.json({ ready: true });
    return c.json(errorBody('unavailable', `not ready: ${readiness.reason}`), 503);
  });
  app.get('/metrics', async (c) => c.text(await service.metrics.metrics(), 200, { 'content-type': service.metrics.contentType }));
  const document = openApiDocument({ limits: service.limits, openRate: service.openRate, requestLimits: service.requestLimits, bodyBytesMax });
  app.get('/openapi.json', (c) => c.json(document));

  // The provider's notifications carry its signature, not a bearer token: registered before v1's
  // authentication, which therefore never runs for them.
  const notify = new Hono<{ Variables: AuthVariables }>();
  notify.use('/payments/*', limitBody(bodyBytesMax));
  notify.route('/', paymentNotifyRoutes(service, forwarding));
  app.route('/v1', notify);

  const v1 = new Hono<{ Variables: AuthVariables }>();
  // Only on the routes that take a body: the limit wraps the request stream, which costs
  // two thirds of the throughput of a route that has none (grab, open, reads).
  const bodyLimit = limitBody(bodyBytesMax);
  v1.use('/packets', bodyLimit);
  v1.use('/wallet/deposits', bodyLimit);
  v1.use('/packets/:id/payment/return', bodyLimit);
  v1.use('/admin/webhooks', bodyLimit);
  v1.use('*', async (_c, next) => {
    if (!service.serving) throw new ApiError(503, 'unavailable', `${service.notServingReason}; retry shortly`, { retryAfterSeconds: 1 });
    await next();
  });
  v1.use('*', requireAuth(options.authSecret, { tokenTtlMaxSeconds: options.tokenTtlMaxSeconds }));
  // Every authenticated request is admitted per user by the service; here only its refusal becomes a 429.
  v1.use('*', async (c, next) => {
    // A request another node passed on was admitted there: its tokens are taken once, by the
    // first node (the open bucket is still taken here, in service.open, where the open is decided).
    const forwardedFrom = forwarding.forwardedBy(c);
    if (forwardedFrom !== undefined) {
      c.set('forwardedFrom', forwardedFrom);
      return next();
    }
    const use = c.req.method === 'POST' && OPEN_PATH.test(c.req.path) ? 'open' : 'request';
    const admission = await service.admit(c.get('caller').userId, use);
    if (admission.kind === 'rate_limited') {
      const message = admission.reason === 'in_flight' ? 'too many requests in progress at once; slow down' : 'too many requests; slow down';
      const retryAfter = { 'Retry-After': String(Math.ceil(admission.retryAfterMs / 1000)) };
      // Answered here, not thrown: a flood is mostly refusals, and each should cost as little as
      // possible. A refusal is held before it is sent (a tarpit): a client in a loop then sends
      // one request per connection per hold, so a flood costs a timer per refusal, not a parse
      // and an answer per millisecond. Past the bound of held refusals, one is sent at once and
      // its connection closed, so the client pays a reconnect instead.
      if (refusalsHeld >= REFUSALS_HELD_MAX) return c.json(errorBody('rate_limited', message), 429, { ...retryAfter, Connection: 'close' });
      refusalsHeld += 1;
      try {
        await new Promise((resolve) => setTimeout(resolve, REFUSAL_HOLD_MS));
      } finally {
        refusalsHeld -= 1;
      }
      return c.json(errorBody('rate_limited', message), 429, retryAfter);
    }
    try {
      await next();
    } finally {
      admission.release();
    }
  });
  v1.route('/', walletRoutes(service));
  v1.route('/', packetRoutes(service, forwarding));
  v1.route('/', recordRoutes(service));
  v1.route('/', notificationRoutes(service, options.eventStreamKeepAliveMs === undefined ? {} : { keepAliveMs: options.eventStreamKeepAliveMs }));
  v1.post('/admin/reconcile', requireAdmin, async (c) => c.json(await service.reconcile()));
  v1.get('/admin/cluster', requireAdmin, async (c) => c.json(renderCluster(await service.cluster())));
  v1.all('*', () => {
    throw new ApiError(404, 'not_found', 'no such route');
  });
  app.route('/v1', v1);
  return app;
}
