// The provider's asynchronous notification (API.md, Payments through a provider): no bearer
// token, the provider's signature instead. Any node may receive it; the owner of the packet the
// order names decides it (the body and the signature headers travel with a forward), and only
// there is it verified — signature, time window, nonce — so a nonce is checked exactly once.
import { Hono } from 'hono';
import type { HongbaoService } from '../../app/service.js';
import { packetIdOfOrder } from '../../domain/payment.js';
import type { AuthVariables } from '../auth.js';
import { ApiError, retryLater } from '../errors.js';
import type { Forwarding } from '../forward.js';
import { NODE_HEADER } from './packets.js';

/** The signature headers of a sandbox notification (the shape of WeChat Pay v3's Wechatpay-* headers). */
const SIGNATURE_HEADERS = ['x-sandbox-timestamp', 'x-sandbox-nonce', 'x-sandbox-signature'] as const;

/** The packet an (unverified) notification body names, only to find its owner; null if it names none. */
function packetOfBody(body: string): string | null {
  try {
    const parsed: unknown = JSON.parse(body);
    const orderId = (parsed as { orderId?: unknown } | null)?.orderId;
    return typeof orderId === 'string' ? packetIdOfOrder(orderId) : null;
  } catch {
    return null;
  }
}

export function paymentNotifyRoutes(service: HongbaoService, forwarding: Forwarding) {
  return new Hono<{ Variables: AuthVariables }>().post('/payments/:provider/notify', async (c) => {
    const provider = c.req.param('provider');
    if (!service.paymentProviders.includes(provider)) throw new ApiError(404, 'not_found', `no payment provider named ${provider}`);
    if (!service.serving) throw new ApiError(503, 'unavailable', `${service.notServingReason}; retry shortly`, { retryAfterSeconds: 1 });
    const forwardedFrom = forwarding.forwardedBy(c);
    if (forwardedFrom !== undefined) c.set('forwardedFrom', forwardedFrom);
    const body = await c.req.text();
    const packetId = packetOfBody(body);
    if (packetId !== null) {
      const owners = forwarding.passOn(c, packetId, undefined, { body, contentType: c.req.header('content-type') ?? 'application/json', headers: SIGNATURE_HEADERS });
      if (owners !== undefined) return owners;
    }
    c.header(NODE_HEADER, service.nodeId);
    const outcome = await service.paymentNotification(provider, (name) => c.req.header(name), body);
    if ('state' in outcome) throw retryLater('the packet is busy', outcome.retryAfterMs);
    switch (outcome.kind) {
      case 'accepted':
        return c.json({ code: 'SUCCESS' });
      case 'unauthorized':
        throw new ApiError(401, 'unauthorized', `notification refused: ${outcome.reason}; nothing changed`);
      case 'invalid':
        throw new ApiError(400, 'invalid_request', `notification refused: ${outcome.reason}; nothing changed`);
      case 'not_found':
        throw new ApiError(404, 'not_found', `${outcome.reason}; nothing changed`);
    }
  });
}
