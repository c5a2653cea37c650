// My records: what I sent and what I received, per year, paged.
import { Hono } from 'hono';
import type { Hongbao } from '../../hongbao.js';
import { decodeCursor, encodeCursor, receivedRecords, recordsYearOf, sentRecords, type Cursor } from '../../ledger/records.js';
import { formatFen } from '../../money/money.js';
import type { AuthVariables } from '../auth.js';
import { ApiError } from '../errors.js';
import { iso, renderPacket } from '../render.js';
import { recordsQuery, validate } from '../validation.js';

function cursorOf(text: string | undefined): Cursor | null {
  if (text === undefined || text === '') return null;
  const cursor = decodeCursor(text);
  if (cursor === null) throw new ApiError(400, 'invalid_request', 'cursor is not one this API returned');
  return cursor;
}

export function recordRoutes(hongbao: Hongbao) {
  const currentYear = () => recordsYearOf(hongbao.options.clock.now());
  return new Hono<{ Variables: AuthVariables }>()
    .get('/me/sent', validate('query', recordsQuery), async (c) => {
      const query = c.req.valid('query');
      const year = query.year ?? currentYear();
      const records = await sentRecords(hongbao.database.db, c.get('caller').userId, year, cursorOf(query.cursor));
      return c.json({
        year,
        count: records.count,
        total: formatFen(records.totalFen),
        items: records.items.map((item) =>
          renderPacket(item.packet, { status: item.status, claimedCount: item.claimedCount, claimedFen: item.claimedFen }, true),
        ),
        nextCursor: records.nextCursor === null ? null : encodeCursor(records.nextCursor),
      });
    })
    .get('/me/received', validate('query', recordsQuery), async (c) => {
      const query = c.req.valid('query');
      const year = query.year ?? currentYear();
      const records = await receivedRecords(hongbao.database.db, c.get('caller').userId, year, cursorOf(query.cursor));
      return c.json({
        year,
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
        })),
        nextCursor: records.nextCursor === null ? null : encodeCursor(records.nextCursor),
      });
    });
}
