// My records: what I sent and what I received, per year, paged.
import { Hono } from 'hono';
import type { HongbaoService, RecordsOutcome } from '../../app/service.js';
import { formatFen } from '../../money/money.js';
import type { AuthVariables } from '../auth.js';
import { ApiError } from '../errors.js';
import { iso, renderPacket } from '../render.js';
import { recordsQuery, validate } from '../validation.js';

function recordsOf<View>(outcome: RecordsOutcome<View>): View {
  if (outcome.kind === 'invalid_cursor') throw new ApiError(400, 'invalid_request', 'cursor is not one this API returned');
  return outcome.view;
}

export function recordRoutes(service: HongbaoService) {
  return new Hono<{ Variables: AuthVariables }>()
    .get('/me/sent', validate('query', recordsQuery), async (c) => {
      const query = c.req.valid('query');
      const records = recordsOf(await service.sentRecords(c.get('caller').userId, query.year, query.cursor));
      return c.json({
        year: records.year,
        count: records.count,
        total: formatFen(records.totalFen),
        items: records.items.map((item) => renderPacket(item, true)),
        nextCursor: records.nextCursor,
      });
    })
    .get('/me/received', validate('query', recordsQuery), async (c) => {
      const query = c.req.valid('query');
      const records = recordsOf(await service.receivedRecords(c.get('caller').userId, query.year, query.cursor));
      return c.json({
        year: records.year,
        count: records.count,
        total: formatFen(records.totalFen),
        bestLuckCount: records.bestLuckCount,
        items: records.items.map((item) => ({
          packetId: item.packetId,
          senderId: item.senderId,
          type: item.type,
          amount: formatFen(item.amountFen),
          claimedAt: iso(item.claimedAtMs),
          best: item.best,
          credited: item.credited,
        })),
        nextCursor: records.nextCursor,
      });
    });
}
