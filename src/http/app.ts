// The HTTP API (API.md): a thin translation between JSON and the service.
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Logger } from 'pino';
import type { OpenRate } from '../config.js';
import type { Hongbao } from '../hongbao.js';
import { requireAdmin, requireAuth, type AuthVariables } from './auth.js';
import { ApiError, errorBody, handleError } from './errors.js';
import { createMetrics } from './metrics.js';
import { openApiDocument } from './openapi.js';
import { TokenBucketLimiter, type RateLimiter } from './rate-limit.js';
import { packetRoutes } from './routes/packets.js';
import { recordRoutes } from './routes/records.js';
import { walletRoutes } from './routes/wallet.js';

/** Request bodies are small JSON documents; anything bigger is a mistake or an attack. */
export const BODY_BYTES_MAX = 16 * 1024;
/** Opens per user: a burst, then a steady rate. Generous for people, tight for loops. */
export const OPEN_BURST = 100;
export const OPENS_PER_SECOND = 20;

export interface AppOptions {
  readonly authSecret: string;
  readonly logger: Logger;
  readonly limiter?: RateLimiter;
  /** Extra readiness checks (Redis, Kafka); the database and recovery are always checked. */
  readonly readiness?: () => Promise<void>;
  /** The default limiter's rate (config.openRate); pass the same when passing a limiter: GET /openapi.json states it. */
  readonly openRate?: OpenRate;
  /** Largest request body (config.bodyBytesMax). */
  readonly bodyBytesMax?: number;
}

export function createApp(hongbao: Hongbao, options: AppOptions) {
  const metrics = createMetrics(hongbao);
  const openRate = options.openRate ?? { burst: OPEN_BURST, perSecond: OPENS_PER_SECOND };
  const bodyBytesMax = options.bodyBytesMax ?? BODY_BYTES_MAX;
  const limiter = options.limiter ?? new TokenBucketLimiter(openRate.burst, openRate.perSecond);
  const app = new Hono<{ Variables: AuthVariables }>();

  app.onError((error, c) => handleError(error, c, options.logger));
  app.notFound((c) => c.json(errorBody('not_found', `no route ${c.req.method} ${c.req.path}`), 404));
  app.use('*', async (c, next) => {
    await next();
    metrics.requests.inc({ method: c.req.method, route: c.req.routePath, status: String(c.res.status) });
  });
  app.get('/healthz', (c) => c.json({ ok: true }));
  app.get('/readyz', async (c) => {
    try {
      if (!hongbao.isReady) throw new Error('recovering');
      await hongbao.checkDatabase();
      await options.readiness?.();
      return c.json({ ready: true });
    } catch (error) {
      return c.json(errorBody('unavailable', `not ready: ${(error as Error).message}`), 503);
    }
  });
  app.get('/metrics', async (c) => c.text(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType }));
  const document = openApiDocument({ limits: hongbao.limits, openRate, bodyBytesMax });
  app.get('/openapi.json', (c) => c.json(document));

  const v1 = new Hono<{ Variables: AuthVariables }>();
  // Only on the routes that take a body: the limit wraps the request stream, which costs
  // two thirds of the throughput of a route that has none (grab, open, reads).
  const limitBody = bodyLimit({
    maxSize: bodyBytesMax,
    onError: (c) => c.json(errorBody('payload_too_large', `request body is larger than ${bodyBytesMax} bytes`), 413),
  });
  v1.use('/packets', limitBody);
  v1.use('/wallet/deposits', limitBody);
  v1.use('*', async (_c, next) => {
    if (!hongbao.isReady) throw new ApiError(503, 'unavailable', 'recovering: applying the event log; retry shortly');
    await next();
  });
  v1.use('*', requireAuth(options.authSecret));
  v1.route('/', walletRoutes(hongbao));
  v1.route('/', packetRoutes(hongbao, limiter, (state) => metrics.opens.inc({ state })));
  v1.route('/', recordRoutes(hongbao));
  v1.post('/admin/reconcile', requireAdmin, async (c) => c.json(await hongbao.reconcile()));
  v1.all('*', () => {
    throw new ApiError(404, 'not_found', 'no such route');
  });
  app.route('/v1', v1);
  return app;
}
