// The sandbox's request bodies (zod). Every shape problem is a 400 invalid_request whose message
// lists each field and what is wrong with it; amounts are judged by parseYuan, as everywhere.
import type { Context } from 'hono';
import { z } from 'zod';
import { orderAmount } from '../yuan.js';
import { SandboxError } from './errors.js';

export const ORDER_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
export const DESCRIPTION_LENGTH_MAX = 200;
export const NOTIFY_URL_LENGTH_MAX = 2048;
export const PAY_TOKEN_LENGTH_MAX = 128;

const orderId = z.string({ error: 'must be a string' }).regex(ORDER_ID_PATTERN, 'must be 1–64 characters of [A-Za-z0-9_-]');

const amount = orderAmount;

const notifyUrl = z
  .string({ error: 'must be a string' })
  .max(NOTIFY_URL_LENGTH_MAX)
  .refine((text) => {
    try {
      const url = new URL(text);
      return url.protocol === 'http:' || url.protocol === 'https:';
    } catch {
      return false;
    }
  }, 'must be an absolute http:// or https:// URL');

const description = z
  .string({ error: 'must be a string' })
  .refine((text) => [...text].length <= DESCRIPTION_LENGTH_MAX, `must be at most ${DESCRIPTION_LENGTH_MAX} characters`)
  .refine((text) => !text.includes('\u0000'), 'must not contain NUL characters');

/** An ISO 8601 instant with its offset ("2026-01-01T00:00:00Z"), as ms. */
const instant = z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time with its offset, like "2026-01-01T08:00:00Z"' }).transform((text) => Date.parse(text));

export const createOrderBody = z.object({ orderId, amount, description, notifyUrl, expiresAt: instant });
export type CreateOrderBody = z.infer<typeof createOrderBody>;

export const PAY_OUTCOMES = ['success', 'fail', 'reversed'] as const;
export const NOTIFY_MODES = ['normal', 'delayed', 'duplicate', 'never'] as const;

export const payBody = z.object({
  orderId,
  payToken: z.string({ error: 'must be a string' }).min(1).max(PAY_TOKEN_LENGTH_MAX),
  outcome: z.enum(PAY_OUTCOMES, { error: `must be one of ${PAY_OUTCOMES.join(', ')}` }),
  notify: z.enum(NOTIFY_MODES, { error: `must be one of ${NOTIFY_MODES.join(', ')}` }).default('normal'),
});
export type PayBody = z.infer<typeof payBody>;

/** The body as JSON, checked against `schema`; a 400 naming every problem otherwise. */
export async function readBody<Schema extends z.ZodType>(c: Context, schema: Schema): Promise<z.infer<Schema>> {
  const text = await c.req.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new SandboxError(400, 'invalid_request', 'the body must be a JSON object');
  }
  const result = schema.safeParse(json);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `${issue.path.length === 0 ? 'body' : issue.path.join('.')}: ${issue.message}`);
  throw new SandboxError(400, 'invalid_request', problems.join('; '));
}

export function checkOrderId(text: string): string {
  if (!ORDER_ID_PATTERN.test(text)) throw new SandboxError(400, 'invalid_request', 'orderId must be 1–64 characters of [A-Za-z0-9_-]');
  return text;
}
