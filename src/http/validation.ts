// Request shapes (zod). Shape errors become 400 invalid_request with the list of problems.
// The same schemas generate the request side of GET /openapi.json (openapi.ts).
//
// Limits (count, share bounds, greeting length) appear here only as JSON Schema keywords
// in .meta(), for the document: they are enforced by the domain's planSend with the same
// Limits object, so its messages stay the ones users see, and a schema built from other
// limits validates exactly like `sendBody` (routes may keep using the constant).
import { zValidator } from '@hono/zod-validator';
import type { ValidationTargets } from 'hono';
import { z } from 'zod';
import { DEFAULT_GREETING, DEFAULT_LIMITS, type Limits } from '../domain/limits.js';
import { PACKET_TYPES, PAY_WITH } from '../domain/packet.js';
import { MEMBERS_MAX } from '../domain/validation.js';
import { formatFen } from '../money/money.js';
import { USER_ID_PATTERN } from './auth.js';
import { ApiError } from './errors.js';

/** What parseYuan accepts (money.ts), for the document; parseYuan stays the judge. */
export const YUAN_IN_PATTERN = '^(0|[1-9][0-9]{0,11})(\\.[0-9]{1,2})?$';

const userId = z.string().regex(USER_ID_PATTERN, 'must be 1–64 characters of [A-Za-z0-9_-]');
/** Money stays a string here; parseYuan decides what a valid amount is. */
const yuan = z.string({ error: 'must be a string of yuan like "12.34"' }).meta({ pattern: YUAN_IN_PATTERN, examples: ['12.34'] });
/** Free text we store and echo: Postgres text/jsonb hold neither NUL nor a lone UTF-16 surrogate. */
const storableText = z.string().refine((text) => !text.includes('\u0000') && !/\p{Cs}/u.test(text), {
  message: 'must be valid Unicode text without NUL characters',
});

export function sendBodySchema(limits: Limits) {
  const min = formatFen(limits.shareFenMin);
  const max = formatFen(limits.shareFenMax);
  return z
    .object({
      type: z.enum(PACKET_TYPES).describe(
        'personal: one share for one user; group_fixed: count equal shares of amount each; group_lucky: count random shares (手气红包) adding up to amount',
      ),
      targetId: userId.describe('the receiving user (personal; not yourself) or the group (group_fixed, group_lucky)'),
      count: z
        .number()
        .int()
        .positive()
        .meta({
          maximum: limits.countMax,
          description: `number of shares: personal must be 1; group packets 1 to ${limits.countMax} (PACKET_COUNT_MAX)`,
        }),
      amount: yuan.describe(
        `yuan, at most two decimals. group_lucky: the total, from count × ${min} to count × ${max}; ` +
          `personal and group_fixed: each share, from ${min} to ${max} (SHARE_AMOUNT_MIN, SHARE_AMOUNT_MAX), ` +
          'so the total debited is amount × count',
      ),
      greeting: storableText.optional().meta({
        maxLength: limits.greetingLengthMax,
        default: DEFAULT_GREETING,
        description: `shown on the packet; at most ${limits.greetingLengthMax} characters (GREETING_LENGTH_MAX), counted as Unicode code points; no NUL`,
      }),
      members: z
        .array(userId.describe('a user who may open it'))
        .optional()
        .meta({
          minItems: 1,
          maxItems: MEMBERS_MAX,
          uniqueItems: true,
          description: `group packets only: only these users may open it (the sender too must be listed to open their own); 1 to ${MEMBERS_MAX} distinct users`,
        }),
      payWith: z
        .enum(PAY_WITH)
        .optional()
        .meta({
          default: 'balance',
          description:
            'balance: debited at once; sandbox: paid through the sandbox provider — the packet is pending_payment, and the answer carries the order to pay',
        }),
    })
    .describe('A packet to send; paid from the balance at once, or through a payment provider');
}

export const depositBodySchema = z
  .object({
    userId: userId.describe('the user whose balance is funded'),
    amount: yuan.describe('yuan to add, at least 0.01, at most two decimals'),
  })
  .describe('A deposit (stands in for a bank top-up)');

/** What the sender's app forwards: the provider's signed synchronous return, as it received it. */
export const paymentReturnBodySchema = z
  .object({ returnPayload: z.string().min(1).max(4096).describe('the provider’s signed synchronous result, as the app received it (sandbox: from POST /v1/pay)') })
  .describe('A payment return to forward');
export const paymentReturnBody = paymentReturnBodySchema;

export const recordsQuerySchema = z
  .object({
    year: z.coerce.number().int().min(2000).max(2100).optional().describe('the year (China Standard Time), 2000–2100; default the current one'),
    cursor: z.string().max(200).optional().describe('nextCursor of the previous page; empty or absent for the first page'),
  })
  .describe('Which records');

export const idempotencyKeySchema = z
  .string()
  .min(1)
  .max(100)
  .describe('required: the same key with the same body returns the first response again; with another body → 409');

/** The schemas the routes validate with today (the default limits only change the document). */
export const sendBody = sendBodySchema(DEFAULT_LIMITS);
export const depositBody = depositBodySchema;
export const recordsQuery = recordsQuerySchema;

export function validate<Target extends keyof ValidationTargets, Schema extends z.ZodType>(target: Target, schema: Schema) {
  return zValidator(target, schema, (result) => {
    if (!result.success) {
      const details = result.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message }));
      throw new ApiError(400, 'invalid_request', `invalid ${target}: ${details.map((d) => `${d.path || '(root)'} ${d.message}`).join('; ')}`, { details });
    }
  });
}

export function idempotencyKey(header: string | undefined): string {
  const parsed = idempotencyKeySchema.safeParse(header);
  if (!parsed.success) throw new ApiError(400, 'invalid_request', 'Idempotency-Key header is required (1–100 characters)');
  return parsed.data;
}
