// Request shapes (zod). Shape errors become 400 invalid_request with the list of problems.
import { zValidator } from '@hono/zod-validator';
import type { ValidationTargets } from 'hono';
import { z } from 'zod';
import { PACKET_TYPES } from '../domain/packet.js';
import { USER_ID_PATTERN } from './auth.js';
import { ApiError } from './errors.js';

const userId = z.string().regex(USER_ID_PATTERN, 'must be 1–64 characters of [A-Za-z0-9_-]');
/** Money stays a string here; parseYuan decides what a valid amount is. */
const yuan = z.string({ error: 'must be a string of yuan like "12.34"' });
/** Free text we store and echo: Postgres text/jsonb hold neither NUL nor a lone UTF-16 surrogate. */
const storableText = z.string().refine((text) => !text.includes('\u0000') && !/\p{Cs}/u.test(text), {
  message: 'must be valid Unicode text without NUL characters',
});

export const sendBody = z.object({
  type: z.enum(PACKET_TYPES),
  targetId: userId,
  count: z.number().int().positive(),
  amount: yuan,
  greeting: storableText.optional(),
  members: z.array(userId).optional(),
});

export const depositBody = z.object({ userId, amount: yuan });

export const recordsQuery = z.object({
  year: z.coerce.number().int().min(2000).max(2100).optional(),
  cursor: z.string().max(200).optional(),
});

export function validate<Target extends keyof ValidationTargets, Schema extends z.ZodType>(target: Target, schema: Schema) {
  return zValidator(target, schema, (result) => {
    if (!result.success) {
      const details = result.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message }));
      throw new ApiError(400, 'invalid_request', `invalid ${target}: ${details.map((d) => `${d.path || '(root)'} ${d.message}`).join('; ')}`, { details });
    }
  });
}

export function idempotencyKey(header: string | undefined): string {
  if (header === undefined || header.length < 1 || header.length > 100) {
    throw new ApiError(400, 'invalid_request', 'Idempotency-Key header is required (1–100 characters)');
  }
  return header;
}
