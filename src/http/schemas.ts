// Response shapes (zod) of every route, as render.ts and the routes write them. The OpenAPI
// document is generated from these; the contract tests parse real responses with them.
// Objects are open (z.object strips, never rejects, unknown keys): API.md lets us add fields.
import { z } from 'zod';
import { NOTIFICATION_TYPES, type NotificationType } from '../domain/notification.js';
import { PACKET_TYPES, PAY_WITH } from '../domain/packet.js';
import type { ErrorCode } from './errors.js';
import { KEEP_ALIVE_MS } from './routes/notifications.js';

/** Responses always write yuan with exactly two decimals (API.md, Money). */
const YUAN_OUT_PATTERN = /^(0|[1-9][0-9]*)\.[0-9]{2}$/;

export const yuanOut = (description: string) =>
  z.string().regex(YUAN_OUT_PATTERN, 'must be yuan with two decimals').meta({ description, examples: ['12.34'] });
const time = (description: string) => z.iso.datetime().describe(`${description} (ISO-8601 UTC)`);
const userIdOut = (description: string) => z.string().describe(description);

export const PACKET_STATUSES = ['pending_payment', 'awaiting_funds', 'live', 'finished', 'expired', 'cancelled'] as const;

export const packetTypeSchema = z
  .enum(PACKET_TYPES)
  .describe(
    'personal: one share for one user (targetId); group_fixed: count equal shares of amount each; ' +
      'group_lucky: count random shares (手气红包) that add up to amount',
  );

export const packetSchema = z
  .object({
    id: z.string().describe('the packet id (opaque)'),
    type: packetTypeSchema,
    senderId: userIdOut('who sent it'),
    targetId: z.string().describe('the receiving user (personal) or the group (group_fixed, group_lucky)'),
    count: z.number().int().positive().describe('number of shares; 1 for personal'),
    total: yuanOut(
      'what the sender paid: amount × count for personal/group_fixed, amount for group_lucky. ' +
        'Shown to the sender always; to others only on a finished group_fixed/personal packet, absent otherwise',
    ).optional(),
    greeting: z.string().describe('the greeting shown on the packet'),
    status: z
      .enum(PACKET_STATUSES)
      .describe(
        'live: shares can be opened; finished: every share is claimed; expired: its lifetime ended before that, the rest went back to the sender. ' +
          'Paid through a provider: pending_payment (not paid yet: nothing to open), awaiting_funds (等待到账: openable, the claims are held until the funds are confirmed), cancelled (the payment failed: held claims are void)',
      ),
    createdAt: time('when it was sent'),
    expiresAt: time('when its lifetime ends (PACKET_TTL_MS after it first became openable); the rest is refunded then. Absent while pending_payment').optional(),
    payWith: z.enum(PAY_WITH).describe('balance: debited at send; sandbox: paid through the sandbox payment provider'),
    claimedCount: z.number().int().nonnegative().describe('shares claimed so far'),
    claimedAmount: yuanOut('Σ of the claimed shares; shown where total is shown, absent otherwise').optional(),
    members: z.array(userIdOut('a user who may open it')).optional().describe('group only, when given at send: only these users may open it'),
  })
  .describe('A red packet (API.md, Packet)');

export const walletResponse = z
  .object({
    userId: userIdOut('the wallet owner'),
    balance: yuanOut('the balance, including every claim already credited'),
    pending: yuanOut('claims decided but not yet credited: not yet booked by the ledger, or held while their packet awaits its funds (void claims of a cancelled packet are not counted)'),
  })
  .describe('The caller’s wallet');

export const depositResponse = z
  .object({ userId: userIdOut('the funded user'), balance: yuanOut('their balance after the deposit') })
  .describe('The funded wallet');

export const paymentSchema = z
  .object({
    orderId: z.string().describe('the provider order that pays this packet'),
    provider: z.enum(PAY_WITH).exclude(['balance']).describe('the provider'),
    amount: yuanOut('what the order is for: the packet total'),
    payToken: z.string().describe('what the payer’s app hands the provider’s payment sheet (sandbox: POST {SANDBOX_URL}/v1/pay)'),
    expiresAt: time('after this the order can no longer be paid'),
  })
  .describe('How to pay a packet sent with payWith other than balance');

export const sendResponse = z
  .object({ packet: packetSchema, payment: paymentSchema.optional() })
  .describe('The packet just sent: live with the balance debited, or pending_payment with the order to pay (payWith: sandbox)');

export const paymentReturnResponse = z.object({ packet: packetSchema }).describe('The packet after the return: awaiting_funds (or live if the funds are in), or cancelled if it said failed');

export const notifyResponse = z.object({ code: z.literal('SUCCESS').describe('accepted (also a repeat); the provider stops retrying') }).describe('Notification accepted');

const shareAmount = yuanOut('the share the caller got');

export const grabResponse = z
  .discriminatedUnion('state', [
    z.object({
      state: z.enum(['openable', 'sold_out', 'expired', 'not_eligible', 'pending_payment', 'cancelled']).describe(
        'openable: there is a share for you to open; sold_out: every share is claimed; expired: its lifetime ended; not_eligible: you may not open it; ' +
          'pending_payment: not paid yet, nothing to open; cancelled: its payment failed',
      ),
    }),
    z.object({ state: z.literal('claimed').describe('you already opened it'), amount: shareAmount }),
  ])
  .describe('抢: may the caller open it? Changes nothing');

export const openResponse = z
  .discriminatedUnion('state', [
    z.object({
      state: z.enum(['claimed', 'already_claimed']).describe('claimed: you just got amount; already_claimed: the amount you got before'),
      amount: shareAmount,
      seq: z.number().int().positive().describe('you were the seq-th to open it'),
    }),
    z.object({
      state: z.enum(['sold_out', 'expired', 'not_eligible', 'pending_payment', 'cancelled']).describe(
        'sold_out: every share is claimed; expired: its lifetime ended; not_eligible: you may not open it; pending_payment: not paid yet, nothing to open; cancelled: its payment failed',
      ),
    }),
    z.object({
      state: z.literal('busy').describe('shed under overload; nothing changed, retry later'),
      retryAfterMs: z.number().int().nonnegative().describe('milliseconds to wait before retrying'),
    }),
  ])
  .describe('拆: the outcome of opening. Opening twice never pays twice');

export const pageClaimSchema = z
  .object({
    userId: userIdOut('who opened it'),
    amount: yuanOut('what they got'),
    claimedAt: time('when they opened it'),
    best: z.boolean().describe('true for the best-luck claim (手气最佳), only on a finished group_lucky packet'),
    credited: z.boolean().describe('false while its money is held (the packet is awaiting_funds, or it was cancelled and the claim is void); otherwise true'),
  })
  .describe('One claim');

export const resultPageResponse = z
  .object({
    packet: packetSchema,
    summary: z.string().describe('the header line, e.g. 10个红包共20.00元,15秒被抢光 (API.md, Result page rules 4–6, 9)'),
    myAmount: yuanOut('what the viewer got; only if the viewer has opened it').optional(),
    claims: z
      .array(pageClaimSchema)
      .optional()
      .describe('newest first; present for group_lucky packets and for one’s own group_fixed/personal packets, absent otherwise'),
    actions: z
      .array(z.enum(['resend', 'view_my_records']).describe('resend: own packet still live; view_my_records: you opened someone else’s packet'))
      .describe('what the app may offer the viewer'),
    notice: z.string().optional().describe('where the money went (e.g. 已存入零钱,可用于发红包); only if the viewer has opened it'),
  })
  .describe('The result page for the caller');

const recordsYear = z.number().int().describe('the year of these records, in China Standard Time');
const nextCursor = z.string().nullable().describe('pass as cursor for the next page; null on the last page');

export const sentRecordsResponse = z
  .object({
    year: recordsYear,
    count: z.number().int().nonnegative().describe('packets sent in the year'),
    total: yuanOut('Σ of their totals'),
    items: z.array(packetSchema).describe('this page of packets, newest first'),
    nextCursor,
  })
  .describe('Packets I sent in a year');

export const receivedItemSchema = z
  .object({
    packetId: z.string().describe('the packet'),
    senderId: userIdOut('who sent it'),
    type: packetTypeSchema,
    amount: yuanOut('what I got'),
    claimedAt: time('when I opened it'),
    best: z.boolean().describe('I was the best luck of a finished group_lucky packet'),
    credited: z.boolean().describe('false while its packet awaits its funds (the money is held); shares of a cancelled packet are not listed'),
  })
  .describe('One share I received');

export const receivedRecordsResponse = z
  .object({
    year: recordsYear,
    count: z.number().int().nonnegative().describe('shares received in the year'),
    total: yuanOut('Σ of what I received'),
    bestLuckCount: z.number().int().nonnegative().describe('how often I was the best luck'),
    items: z.array(receivedItemSchema).describe('this page of shares, newest first'),
    nextCursor,
  })
  .describe('Shares I received in a year');

export const reconcileResponse = z
  .object({
    checkedPackets: z.number().int().nonnegative().describe('packets checked'),
    checkedAccounts: z.number().int().nonnegative().describe('accounts checked'),
    checkedLogClaims: z.number().int().nonnegative().describe('claims in the event log, up to the ledger’s position, held against the booked claims'),
    discrepancies: z
      .array(
        z
          .object({
            kind: z
              .enum(['packet', 'account', 'book', 'conflict', 'log'])
              .describe(
                'packet: Σ claims + refund or escrow disagrees with its total; account: balance ≠ Σ transfers; book: Σ balances ≠ 0; ' +
                  'conflict: an event or transfer met an existing one with other terms (exists_with_different_amount, _user, _accounts, user_already_claimed_other_seq) and was not applied; ' +
                  'log: a claim in the event log is not booked, or booked with other terms',
              ),
            id: z.string().describe('the packet, account, conflict or transfer id; "all" for the book'),
            message: z.string().describe('what disagrees, in fen'),
          })
          .describe('One disagreement'),
      )
      .describe('empty when the books are right'),
  })
  .describe('对账: the reconciliation report');

export const clusterResponse = z
  .object({
    self: z.string().describe('the id (NODE_ID) of the node that answered'),
    nodes: z
      .array(
        z
          .object({
            id: z.string().describe('the node’s id (NODE_ID)'),
            url: z.string().describe('where the other nodes reach it (ADVERTISE_URL); requests for packets it owns are forwarded there'),
            role: z.enum(['all', 'engine', 'ledger']).describe('engine: serves HTTP and packets; ledger: books the log into the ledger; all: both (ROLE)'),
            owns: z
              .array(z.number().int().nonnegative().describe('a slot (a partition of the event log)'))
              .describe('the slots whose packets it decides, ascending; empty for a ledger-only node'),
          })
          .describe('One node'),
      )
      .describe('every node of the cluster, this one included'),
  })
  .describe('The nodes of the cluster and the slots each owns');

export const healthResponse = z.object({ ok: z.literal(true).describe('the process runs') }).describe('Liveness');
export const readyResponse = z.object({ ready: z.literal(true).describe('it can serve') }).describe('Readiness');
export const metricsResponse = z.string().describe('Prometheus text exposition format');
export const openApiResponse = z
  .looseObject({
    openapi: z.literal('3.1.0').describe('the OpenAPI version'),
    info: z.looseObject({ title: z.string().describe('hongbao'), version: z.string().describe('the API version') }).describe('about the API and this deployment’s limits (x-limits)'),
    paths: z.record(z.string(), z.unknown()).describe('every route'),
  })
  .describe('This OpenAPI 3.1 document');

// Notifications (API.md, Notifications): the admin routes' answers, and the events as a webhook
// receives them (the JSON body) and a live stream carries them (each `data:` line), written by
// src/notify/derive.ts and src/domain/notification.ts.

export const notificationTypeSchema = z
  .enum(NOTIFICATION_TYPES)
  .describe(
    'packet.sent: a packet was sent; packet.live: a packet paid through a provider got its funds (openable with its money); packet.opened: someone opened a share; ' +
      'packet.finished: every share is claimed (and credited); packet.expired: its lifetime ended, the rest was refunded; packet.cancelled: its payment failed; ' +
      'wallet.credited: money was credited to a balance',
  );

const webhookFields = {
  id: z.string().describe('the webhook id (wh_…)'),
  url: z.string().describe('where each event is POSTed'),
  events: z
    .array(notificationTypeSchema)
    .describe('the event types delivered to it: those given at registration, or every type if none were given'),
  createdAt: time('when it was registered'),
};

export const webhookCreatedResponse = z
  .object({
    ...webhookFields,
    secret: z
      .string()
      .describe('the key of its Hongbao-Signature (HMAC-SHA256): shown only in this answer, keep it; every webhook has its own (whsec_…)'),
  })
  .describe('The webhook just registered, with its secret');

export const webhookListResponse = z
  .object({ webhooks: z.array(z.object(webhookFields).describe('One webhook (its secret is never shown again)')).describe('every registered webhook, oldest first') })
  .describe('The registered webhooks');

export const webhookDeletedResponse = z
  .object({
    id: z.string().describe('the webhook deleted'),
    deleted: z.literal(true).describe('it is gone, and so is every delivery to it still pending (an attempt already in flight may still arrive)'),
  })
  .describe('The webhook was deleted');

const eventPacketId = z.string().describe('the packet it is about');
const eventSenderId = userIdOut('who sent the packet');

/** Each type's `data`, as derive.ts writes it. */
const NOTIFICATION_DATA = {
  'packet.sent': z
    .object({
      packetId: eventPacketId,
      senderId: eventSenderId,
      type: packetTypeSchema,
      targetId: z.string().describe('the receiving user (personal) or the group'),
      count: z.number().int().positive().describe('number of shares'),
      total: yuanOut('what the sender pays for it (amount × count, or amount for group_lucky)'),
      payWith: z.enum(PAY_WITH).describe('balance: debited at send (the packet is live at once); sandbox: paid through the provider (packet.live follows when the funds are confirmed)'),
    })
    .describe('packet.sent data'),
  'packet.live': z
    .object({ packetId: eventPacketId, senderId: eventSenderId })
    .describe('packet.live data (only for a packet paid through a provider: one paid from the balance is live at send and has no packet.live)'),
  'packet.opened': z
    .object({
      packetId: eventPacketId,
      senderId: eventSenderId,
      userId: userIdOut('who opened it'),
      amount: yuanOut('the share they got'),
      seq: z.number().int().positive().describe('they were the seq-th to open it'),
      credited: z
        .boolean()
        .describe('true: credited now (wallet.credited follows); false: held while the packet awaits its funds (credited with wallet.credited when they come, never if the packet is cancelled)'),
    })
    .describe('packet.opened data'),
  'packet.finished': z
    .object({
      packetId: eventPacketId,
      senderId: eventSenderId,
      count: z.number().int().positive().describe('number of shares, all claimed'),
      total: yuanOut('the packet total'),
      secondsToEmpty: z.number().int().nonnegative().describe('whole seconds from the packet going live to its last share claimed'),
      bestLuck: z
        .object({
          userId: userIdOut('who got the largest share (on a tie, the earliest opener)'),
          amount: yuanOut('that share'),
          seq: z.number().int().positive().describe('they were the seq-th to open it'),
        })
        .nullable()
        .describe('手气最佳: the best luck of a group_lucky packet; null for personal and group_fixed'),
    })
    .describe('packet.finished data'),
  'packet.expired': z
    .object({
      packetId: eventPacketId,
      senderId: eventSenderId,
      refund: yuanOut('what went back to the sender’s balance (the unclaimed rest)'),
      claimedCount: z.number().int().nonnegative().describe('shares claimed before it expired'),
    })
    .describe('packet.expired data'),
  'packet.cancelled': z
    .object({
      packetId: eventPacketId,
      senderId: eventSenderId,
      reason: z
        .enum(['payment_failed', 'payment_timeout'])
        .describe('payment_failed: the provider said the payment failed; payment_timeout: nothing confirmed it within PAYMENT_TIMEOUT_MS (the order was closed)'),
    })
    .describe('packet.cancelled data: its held claims are void, no money moved'),
  'wallet.credited': z
    .discriminatedUnion('reason', [
      z
        .object({
          userId: userIdOut('whose balance was credited: the opener'),
          amount: yuanOut('what was credited'),
          packetId: eventPacketId,
          senderId: eventSenderId,
          seq: z.number().int().positive().describe('the claim’s seq in the packet'),
          reason: z.literal('claim').describe('claim: a share they opened was credited (at the open, or when the funds of a packet awaiting them came)'),
        })
        .describe('A share credited'),
      z
        .object({
          userId: userIdOut('whose balance was credited: the sender'),
          amount: yuanOut('what was credited: the money that came for the cancelled packet'),
          packetId: eventPacketId,
          senderId: eventSenderId,
          reason: z.literal('late_credit').describe('late_credit: money arrived for a packet already cancelled, and went to its sender’s balance'),
        })
        .describe('Money that came late credited to the sender'),
    ])
    .describe('wallet.credited data'),
} as const satisfies Record<NotificationType, z.ZodType>;

/** "packet.sent {packetId, senderId, …}; …": each type's data fields (a `?` where only some of its shapes have it). */
export function notificationDataSummary(): string {
  return NOTIFICATION_TYPES.map((type) => {
    const schema: z.ZodType = NOTIFICATION_DATA[type];
    const shapes = (schema instanceof z.ZodDiscriminatedUnion ? (schema.options as z.ZodObject[]) : [schema as z.ZodObject]).map((option) => option.shape);
    const keys = [...new Set(shapes.flatMap((shape) => Object.keys(shape)))];
    return `${type} {${keys.map((key) => (shapes.every((shape) => key in shape) ? key : `${key}?`)).join(', ')}}`;
  }).join('; ');
}

const EVENT_ID_NOTE =
  'the event id, deterministic (evt_sent_<packet>, evt_live_<packet>, evt_opened_<packet>_<seq>, evt_credited_<packet>_<seq>, evt_finished_<packet>, ' +
  'evt_expired_<packet>, evt_cancelled_<packet>, evt_late_<order>): the same on every retry and on the live stream; deduplicate on it';

/** One event as POSTed to a webhook and as the JSON of a stream's `data:` line, for each type. */
export const notificationEventSchemas = Object.fromEntries(
  NOTIFICATION_TYPES.map((type) => [
    type,
    z
      .object({
        id: z.string().describe(EVENT_ID_NOTE),
        type: z.literal(type).describe(`the event type: ${type}`),
        createdAt: time('when it happened (the open, the expiry, the funding…), not when it was delivered'),
        data: NOTIFICATION_DATA[type],
      })
      .describe(`A ${type} event`),
  ]),
) as { [Type in NotificationType]: z.ZodObject<{ id: z.ZodString; type: z.ZodLiteral<Type>; createdAt: z.ZodISODateTime; data: (typeof NOTIFICATION_DATA)[Type] }> };

export const notificationEventSchema = z
  .discriminatedUnion(
    'type',
    NOTIFICATION_TYPES.map((type) => notificationEventSchemas[type]) as unknown as [
      (typeof notificationEventSchemas)[NotificationType],
      ...(typeof notificationEventSchemas)[NotificationType][],
    ],
  )
  .describe('An event: {id, type, createdAt, data}');

export const eventStreamResponse = z
  .string()
  .describe(
    'text/event-stream (Server-Sent Events), open until the client leaves: first the comment ": connected", then for each event that concerns the caller, ' +
      'oldest first, a frame "event: <type>\ndata: <JSON {id, type, createdAt, data}: the webhook body of that type>\nid: <event id>\n\n"; ' +
      `a comment ": keep-alive" when nothing was sent for ${KEEP_ALIVE_MS / 1000} s`,
  );

const ERROR_DESCRIPTIONS: Record<ErrorCode, string> = {
  invalid_request: 'bad body, query or header; details lists the problems',
  unauthorized: 'missing, invalid or expired bearer token, or a Hongbao-Forwarded header that does not verify (only nodes send it)',
  insufficient_balance: 'the balance is less than the packet’s total; nothing changed',
  forbidden: 'an admin route without the admin role, or a result page you may not view',
  not_found: 'no such packet, webhook or route',
  idempotency_conflict: 'this Idempotency-Key was used with another body',
  payload_too_large: 'the request body is over the configured limit (BODY_BYTES_MAX)',
  rate_limited: 'too many requests (opens per user); see Retry-After',
  unavailable: 'recovering, overloaded, a dependency is down, or the node that owns the packet cannot answer now (moving, slow, down); retry shortly (Retry-After)',
  internal: 'a bug; it has been logged (never for bad input)',
};

const errorDetails = z
  .union([
    z
      .array(
        z
          .object({ path: z.string().describe('the field, dotted; empty for the root'), message: z.string().describe('what is wrong with it') })
          .describe('One shape problem'),
      )
      .describe('shape problems, one per field'),
    z.array(z.string().describe('one broken rule, e.g. count must be at most 100')).describe('business-rule problems of a send'),
  ])
  .optional()
  .describe('400 only: the problems found');

/** API.md's error body, with `code` fixed to the code of one status. */
export function errorResponse(code: ErrorCode) {
  return z
    .object({
      error: z
        .object({
          code: z.literal(code).describe(`${code}: ${ERROR_DESCRIPTIONS[code]}`),
          message: z.string().min(1).describe('human text'),
          details: errorDetails,
        })
        .describe('what went wrong'),
    })
    .describe(`Error ${code}`);
}

/** Status → the code API.md gives it. */
export const ERROR_CODE_OF_STATUS = {
  400: 'invalid_request',
  401: 'unauthorized',
  402: 'insufficient_balance',
  403: 'forbidden',
  404: 'not_found',
  409: 'idempotency_conflict',
  413: 'payload_too_large',
  429: 'rate_limited',
  500: 'internal',
  503: 'unavailable',
} as const satisfies Record<number, ErrorCode>;

export const errorDescription = (code: ErrorCode) => ERROR_DESCRIPTIONS[code];
