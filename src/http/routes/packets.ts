// Packets: send, grab (抢), open (拆) and the result page.
import { Hono } from 'hono';
import { DEFAULT_GREETING } from '../../domain/limits.js';
import { mayView } from '../../domain/packet.js';
import { resultPage } from '../../domain/result-page.js';
import type { Hongbao } from '../../hongbao.js';
import { formatFen, parseYuan } from '../../money/money.js';
import type { AuthVariables } from '../auth.js';
import { ApiError, errorBody } from '../errors.js';
import type { RateLimiter } from '../rate-limit.js';
import { renderPacket, renderPage } from '../render.js';
import { idempotencyKey, sendBody, validate } from '../validation.js';

const PACKET_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

function packetIdOf(raw: string): string {
  // An id we could never have issued is simply not found.
  if (!PACKET_ID_PATTERN.test(raw)) throw new ApiError(404, 'not_found', 'no such packet');
  return raw;
}

const notFound = () => new ApiError(404, 'not_found', 'no such packet');
const overloaded = () => new ApiError(503, 'unavailable', 'the engine is saturated; retry shortly');

export function packetRoutes(hongbao: Hongbao, limiter: RateLimiter, onOpen: (state: string) => void) {
  return new Hono<{ Variables: AuthVariables }>()
    .post('/packets', validate('json', sendBody), async (c) => {
      const body = c.req.valid('json');
      const key = idempotencyKey(c.req.header('idempotency-key'));
      const senderId = c.get('caller').userId;
      const outcome = await hongbao.send(
        {
          type: body.type,
          senderId,
          targetId: body.targetId,
          count: body.count,
          amountFen: parseYuan(body.amount),
          greeting: body.greeting ?? DEFAULT_GREETING,
          members: body.members ?? null,
        },
        key,
        (packet) => ({ packet: renderPacket(packet, { status: 'live', claimedCount: 0, claimedFen: 0 }, true) }),
        (balanceFen) => errorBody('insufficient_balance', `balance ${formatFen(balanceFen)} is less than the packet's total`),
      );
      if (outcome.kind === 'invalid') throw new ApiError(400, 'invalid_request', outcome.problems.join('; '), outcome.problems);
      if (outcome.kind === 'conflict') throw new ApiError(409, 'idempotency_conflict', 'this Idempotency-Key was used with another body');
      return c.json(outcome.response.body as object, outcome.response.statusCode as 201 | 402);
    })
    .post('/packets/:id/grab', async (c) => {
      const outcome = await hongbao.engine.grab(packetIdOf(c.req.param('id')), c.get('caller').userId);
      if (outcome.state === 'not_found') throw notFound();
      if (outcome.state === 'busy') throw overloaded();
      if (outcome.state === 'claimed') return c.json({ state: outcome.state, amount: formatFen(outcome.amountFen) });
      return c.json({ state: outcome.state });
    })
    .post('/packets/:id/open', async (c) => {
      const packetId = packetIdOf(c.req.param('id'));
      const userId = c.get('caller').userId;
      if (!(await limiter.take(userId, Date.now()))) {
        c.header('Retry-After', '1');
        throw new ApiError(429, 'rate_limited', 'too many opens; slow down');
      }
      const outcome = await hongbao.engine.open(packetId, userId);
      onOpen(outcome.state);
      switch (outcome.state) {
        case 'not_found':
          throw notFound();
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
      const snapshot = await hongbao.engine.view(packetIdOf(c.req.param('id')));
      if (snapshot === null) throw notFound();
      if (snapshot === 'busy') throw overloaded();
      const viewerId = c.get('caller').userId;
      if (!mayView(snapshot.packet, viewerId)) throw new ApiError(403, 'forbidden', 'only the sender and those who may open this packet can view it');
      const page = resultPage(snapshot.packet, snapshot.status, snapshot.claims, viewerId);
      const claimedFen = snapshot.claims.reduce((sum, claim) => sum + claim.amountFen, 0);
      return c.json(renderPage(snapshot.packet, { status: snapshot.status, claimedCount: snapshot.claims.length, claimedFen }, page));
    });
}
