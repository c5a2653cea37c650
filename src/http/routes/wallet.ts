// Wallet: admin deposits (a stand-in for bank top-ups) and the caller's balance.
import { Hono } from 'hono';
import type { Hongbao } from '../../hongbao.js';
import { formatFen, parseYuan } from '../../money/money.js';
import { requireAdmin, type AuthVariables } from '../auth.js';
import { ApiError } from '../errors.js';
import { depositBody, idempotencyKey, validate } from '../validation.js';

export function walletRoutes(hongbao: Hongbao) {
  return new Hono<{ Variables: AuthVariables }>()
    .post('/wallet/deposits', requireAdmin, validate('json', depositBody), async (c) => {
      const body = c.req.valid('json');
      const amountFen = parseYuan(body.amount);
      if (amountFen <= 0) throw new ApiError(400, 'invalid_request', 'amount must be at least 0.01');
      const key = idempotencyKey(c.req.header('idempotency-key'));
      const outcome = await hongbao.deposit(c.get('caller').userId, body.userId, amountFen, key, (balanceFen) => ({
        userId: body.userId,
        balance: formatFen(balanceFen),
      }));
      if (outcome.kind === 'conflict') throw new ApiError(409, 'idempotency_conflict', 'this Idempotency-Key was used with another body');
      if (outcome.kind === 'invalid') throw new ApiError(400, 'invalid_request', outcome.problems.join('; '));
      return c.json(outcome.response.body as object, 201);
    })
    .get('/wallet', async (c) => {
      const userId = c.get('caller').userId;
      const wallet = await hongbao.wallet(userId);
      return c.json({ userId, balance: formatFen(wallet.balanceFen), pending: formatFen(wallet.pendingFen) });
    });
}
