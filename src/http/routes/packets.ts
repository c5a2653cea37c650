// Packets: send, grab (抢), open (拆) and the result page.
import { Hono } from 'hono';
import type { HongbaoService } from '../../app/service.js';
import { DEFAULT_GREETING } from '../../domain/limits.js';
import { formatFen, parseYuan } from '../../money/money.js';
import type { AuthVariables } from '../auth.js';
import { requireJson } from '../body-limit.js';
import { ApiError, idempotencyConflict, retryLater } from '../errors.js';
import type { Forwarding } from '../forward.js';
import { renderPacket, renderPage, renderPayment } from '../render.js';
import { idempotencyKey, paymentReturnBody, sendBody, validate } from '../validation.js';

const PACKET_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
/** Names the node that decided a packet's answer (passed back through a forward), for operators. */
export const NODE_HEADER = 'Hongbao-Node';

const notFound = () => new ApiError(404, 'not_found', 'no such packet');
const overloaded = (retryAfterMs: number) => retryLater('the engine is saturated', retryAfterMs);

function packetIdOf(raw: string): string {
  // An id we could never have issued is simply not found.
  if (!PACKET_ID_PATTERN.test(raw)) throw notFound();
  return raw;
}

/** grab, open and the result page are decided by the packet's owner node; `forwarding` passes them there. */
export function packetRoutes(service: HongbaoService, forwarding: Forwarding) {
  return new Hono<{ Variables: AuthVariables }>()
    .post('/packets', requireJson, validate('json', sendBody), async (c) => {
      const body = c.req.valid('json');
      const key = idempotencyKey(c.req.header('idempotency-key'));
      const outcome = await service.send(
        {
          type: body.type,
          senderId: c.get('caller').userId,
          targetId: body.targetId,
          count: body.count,
          amountFen: parseYuan(body.amount),
          greeting: body.greeting ?? DEFAULT_GREETING,
          members: body.members ?? null,
          // Absent for the balance, so that sends made before payments hash as they did.
          ...(body.payWith !== undefined && body.payWith !== 'balance' ? { payWith: body.payWith } : {}),
        },
        key,
      );
      switch (outcome.kind) {
        case 'invalid':
          throw new ApiError(400, 'invalid_request', outcome.problems.join('; '), { details: outcome.problems });
        case 'idempotency_conflict':
          throw idempotencyConflict();
        case 'insufficient_balance':
          throw new ApiError(402, 'insufficient_balance', `balance ${formatFen(outcome.balanceFen)} is less than the packet's total`);
        case 'provider_unavailable':
          throw new ApiError(503, 'unavailable', `${outcome.message}; nothing was sent, retry shortly`, { retryAfterSeconds: 1 });
        case 'sent':
          return c.json({ packet: renderPacket(outcome.view, true), ...(outcome.payment ? { payment: renderPayment(outcome.payment) } : {}) }, 201);
      }
    })
    .post('/packets/:id/payment/return', requireJson, validate('json', paymentReturnBody), async (c) => {
      const packetId = packetIdOf(c.req.param('id'));
      const body = c.req.valid('json');
      // The owner decides it, in order with the packet's opens: the body travels with the request.
      const owners = forwarding.passOn(c, packetId, undefined, { body: JSON.stringify(body), contentType: 'application/json' });
      if (owners !== undefined) return owners;
      c.header(NODE_HEADER, service.nodeId);
      const outcome = await service.paymentReturn(packetId, c.get('caller').userId, body.returnPayload);
      if ('state' in outcome) throw overloaded(outcome.retryAfterMs);
      switch (outcome.kind) {
        case 'not_found':
          throw notFound();
        case 'forbidden':
          throw new ApiError(403, 'forbidden', 'only the sender of this packet can forward its payment return');
        case 'invalid':
          throw new ApiError(400, 'invalid_request', `${outcome.reason}; nothing changed`);
        case 'settled':
          return c.json({ packet: renderPacket(outcome.view, true) });
      }
    })
    .post('/packets/:id/grab', async (c) => {
      const packetId = packetIdOf(c.req.param('id'));
      const owners = forwarding.passOn(c, packetId);
      if (owners !== undefined) return owners;
      c.header(NODE_HEADER, service.nodeId);
      const outcome = await service.grab(packetId, c.get('caller').userId);
      switch (outcome.state) {
        case 'not_found':
          throw notFound();
        case 'busy':
          throw overloaded(outcome.retryAfterMs);
        case 'claimed':
          return c.json({ state: outcome.state, amount: formatFen(outcome.amountFen) });
        default:
          return c.json({ state: outcome.state });
      }
    })
    .post('/packets/:id/open', async (c) => {
      const packetId = packetIdOf(c.req.param('id'));
      // During a handover an open answers the API's busy state, as when the engine sheds load.
      const owners = forwarding.passOn(c, packetId, (retryAfterMs) => c.json({ state: 'busy', retryAfterMs }));
      if (owners !== undefined) return owners;
      c.header(NODE_HEADER, service.nodeId);
      const outcome = await service.open(packetId, c.get('caller').userId);
      switch (outcome.state) {
        case 'not_found':
          throw notFound();
        case 'rate_limited':
          throw new ApiError(429, 'rate_limited', 'too many opens; slow down', { retryAfterSeconds: Math.ceil(outcome.retryAfterMs / 1000) });
        case 'claimed':
        case 'already_claimed':
          return c.json({ state: outcome.state, amount: formatFen(outcome.amountFen), seq: outcome.seq });
        case 'busy':
          return c.json({ state: outcome.state, retryAfterMs: outcome.retryAfterMs });
        default:
          return c.json({ state: outcome.state });
      }
    })
    .get('/packets/:id', async (c) => {
      const packetId = packetIdOf(c.req.param('id'));
      const owners = forwarding.passOn(c, packetId);
      if (owners !== undefined) return owners;
      c.header(NODE_HEADER, service.nodeId);
      const outcome = await service.resultPage(packetId, c.get('caller').userId);
      if ('state' in outcome) throw overloaded(outcome.retryAfterMs);
      switch (outcome.kind) {
        case 'not_found':
          throw notFound();
        case 'forbidden':
          throw new ApiError(403, 'forbidden', 'only the sender and those who may open this packet can view it');
        case 'page':
          return c.json(renderPage(outcome.view, outcome.page));
      }
    });
}
