// Wallet: admin deposits (a stand-in for bank top-ups) and the caller's balance.
import { Hono } from 'hono';
import type { HongbaoService } from '../../app/service.js';
import { formatFen, parseYuan } from '../../money/money.js';
import { requireAdmin, type AuthVariables } from '../auth.js';
import { requireJson } from '../body-limit.js';
import { ApiError, idempotencyConflict } from '../errors.js';
import { depositBody, idempotencyKey, validate } from '../validation.js';

export function walletRoutes(service: HongbaoService) {
  return new Hono<{ Variables: AuthVariables }>()
    .post('/wallet/deposits', requireAdmin, requireJson, validate('json', depositBody), async (c) => {
      const body = c.req.valid('json');
      const key = idempotencyKey(c.req.header('idempotency-key'));
      const outcome = await service.deposit(c.get('caller').userId, body.userId, parseYuan(body.amount), key);
      switch (outcome.kind) {
        case 'invalid':
          throw new ApiError(400, 'invalid_request', outcome.problems.join('; '), { details: outcome.problems });
        case 'idempotency_conflict':
          throw idempotencyConflict();
        case 'deposited':
          return c.json({ userId: outcome.userId, balance: formatFen(outcome.balanceFen) }, 201);
      }
    })
    .get('/wallet', async (c) => {
      const userId = c.get('caller').userId;
      const wallet = await service.wallet(userId);
      return c.json({ userId, balance: formatFen(wallet.balanceFen), pending: formatFen(wallet.pendingFen) });
    });
}
