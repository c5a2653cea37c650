// Notifications (API.md): the admin routes of webhooks, and the caller's live event stream
// (Server-Sent Events): the events that concern them, each with its id; a reconnect with
// Last-Event-ID resumes after it, with no gap; a comment line keeps an idle stream alive.
import { Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import type { HongbaoService, WebhookView } from '../../app/service.js';
import { NOTIFICATION_TYPES } from '../../domain/notification.js';
import { requireAdmin, type AuthVariables } from '../auth.js';
import { requireJson } from '../body-limit.js';
import { ApiError } from '../errors.js';
import { iso } from '../render.js';
import { validate } from '../validation.js';

/** An idle stream sends a comment this often, so proxies and clients keep the connection. */
export const KEEP_ALIVE_MS = 15_000;
/** The longest Last-Event-ID taken (the ids this build makes are far shorter). */
export const EVENT_ID_LENGTH_MAX = 200;

export const webhookBodySchema = z
  .object({
    url: z.string().min(1).max(2048).describe('where each event is POSTed: http or https (in production a public address unless WEBHOOK_ALLOW_PRIVATE=true)'),
    events: z
      .array(z.enum(NOTIFICATION_TYPES).describe('an event type'))
      .min(1)
      .optional()
      .meta({ uniqueItems: true, description: 'only these types (default: every type)' }),
  })
  .describe('A webhook endpoint to register');

const renderWebhook = (webhook: WebhookView, withSecret: boolean) => ({
  id: webhook.id,
  url: webhook.url,
  events: webhook.events === null ? [...NOTIFICATION_TYPES] : [...webhook.events],
  ...(withSecret ? { secret: webhook.secret } : {}),
  createdAt: iso(webhook.createdAtMs),
});

export function notificationRoutes(service: HongbaoService, options: { keepAliveMs?: number } = {}) {
  const keepAliveMs = options.keepAliveMs ?? KEEP_ALIVE_MS;
  return new Hono<{ Variables: AuthVariables }>()
    .post('/admin/webhooks', requireAdmin, requireJson, validate('json', webhookBodySchema), async (c) => {
      const body = c.req.valid('json');
      const outcome = await service.registerWebhook(body.url, body.events ?? null);
      if (outcome.kind === 'invalid') throw new ApiError(400, 'invalid_request', outcome.problems.join('; '), { details: outcome.problems });
      return c.json(renderWebhook(outcome.webhook, true), 201);
    })
    .get('/admin/webhooks', requireAdmin, async (c) => c.json({ webhooks: (await service.webhooks()).map((webhook) => renderWebhook(webhook, false)) }))
    .delete('/admin/webhooks/:id', requireAdmin, async (c) => {
      const id = c.req.param('id');
      if (!(await service.deleteWebhook(id))) throw new ApiError(404, 'not_found', 'no such webhook');
      return c.json({ id, deleted: true });
    })
    .get('/me/events', async (c) => {
      const lastEventId = c.req.header('last-event-id') ?? c.req.query('lastEventId');
      if (lastEventId !== undefined && (lastEventId.length === 0 || lastEventId.length > EVENT_ID_LENGTH_MAX)) {
        throw new ApiError(400, 'invalid_request', `Last-Event-ID must be 1–${EVENT_ID_LENGTH_MAX} characters`);
      }
      const opening = await service.openEventStream(c.get('caller').userId, lastEventId);
      if (opening.kind === 'unknown_event') throw new ApiError(400, 'invalid_request', 'Last-Event-ID names no event of yours');
      if (opening.kind === 'too_many') throw new ApiError(429, 'rate_limited', opening.reason, { retryAfterSeconds: 5 });
      const { stream: events } = opening;
      return streamSSE(c, async (stream) => {
        stream.onAbort(() => events.close());
        try {
          let lastWriteMs = Date.now();
          // At once: the client knows it is connected before the first event.
          await stream.write(': connected\n\n');
          while (!stream.aborted && !stream.closed) {
            const batch = await events.next(Math.max(0, keepAliveMs - (Date.now() - lastWriteMs)));
            for (const event of batch) {
              await stream.writeSSE({ id: event.id, event: event.type, data: JSON.stringify({ id: event.id, type: event.type, createdAt: iso(event.createdAtMs), data: event.data }) });
            }
            if (batch.length > 0) lastWriteMs = Date.now();
            else if (Date.now() - lastWriteMs >= keepAliveMs) {
              await stream.write(': keep-alive\n\n');
              lastWriteMs = Date.now();
            }
          }
        } finally {
          events.close();
        }
      });
    });
}
