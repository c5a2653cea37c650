// GET /openapi.json: API.md's contract as an OpenAPI 3.1 document, generated from the zod
// schemas that validate requests (validation.ts) and describe responses (schemas.ts), and
// from the configured limits, so the document states what this deployment enforces.
import { z } from 'zod';
import type { HongbaoService } from '../app/service.js';
import type { Limits } from '../domain/limits.js';
import { MEMBERS_MAX } from '../domain/validation.js';
import { formatFen } from '../money/money.js';
import type { ErrorCode } from './errors.js';
import {
  clusterResponse,
  depositResponse,
  ERROR_CODE_OF_STATUS,
  errorDescription,
  errorResponse,
  grabResponse,
  healthResponse,
  metricsResponse,
  openApiResponse,
  openResponse,
  readyResponse,
  receivedRecordsResponse,
  reconcileResponse,
  resultPageResponse,
  sendResponse,
  notifyResponse,
  paymentReturnResponse,
  sentRecordsResponse,
  walletResponse,
  eventStreamResponse,
  notificationDataSummary,
  notificationEventSchemas,
  webhookCreatedResponse,
  webhookDeletedResponse,
  webhookListResponse,
} from './schemas.js';
import { depositBodySchema, idempotencyKeySchema, paymentReturnBodySchema, recordsQuerySchema, sendBodySchema } from './validation.js';
import { PAY_WITH } from '../domain/packet.js';
import { NOTIFICATION_TYPES } from '../domain/notification.js';
import { EVENT_ID_LENGTH_MAX, KEEP_ALIVE_MS, webhookBodySchema } from './routes/notifications.js';

export interface OpenApiOptions {
  readonly limits: Limits;
  readonly openRate: HongbaoService['openRate'];
  /** The per-user limit on every other authenticated route, and on requests in progress at once. */
  readonly requestLimits?: HongbaoService['requestLimits'];
  readonly bodyBytesMax: number;
}

export interface OperationResponse {
  readonly description: string;
  readonly schema: z.ZodType;
  /** application/json unless said. */
  readonly contentType?: string;
}

/** One route: what it takes and every response it gives, as zod schemas. */
export interface Operation {
  readonly method: 'get' | 'post' | 'delete';
  /** OpenAPI path template: `/v1/packets/{id}` for hono's `/v1/packets/:id`. */
  readonly path: string;
  readonly summary: string;
  readonly description?: string;
  /** public: no token; user: any bearer token; admin: a token with role admin. */
  readonly access: 'public' | 'user' | 'admin';
  readonly packetId?: boolean;
  /** A `{provider}` path parameter (the payment provider's name). */
  readonly providerParameter?: boolean;
  /** An `{id}` path parameter naming a webhook. */
  readonly webhookId?: boolean;
  /** Request headers it reads (besides Authorization and Idempotency-Key). */
  readonly headers?: readonly { readonly name: string; readonly description: string; readonly schema: z.ZodType; readonly required?: boolean }[];
  readonly idempotencyKey?: boolean;
  readonly body?: z.ZodType;
  readonly query?: z.ZodObject;
  readonly responses: Readonly<Record<string, OperationResponse>>;
}

const PACKET_ID_PATTERN = '^[A-Za-z0-9_-]{1,64}$';

/**
 * The numbers of the notification parts this document states. They live in src/app and
 * src/notify, which http/ may not import: openapi-document.test.ts holds these equal to them.
 */
export const NOTIFICATION_NUMBERS = {
  /** app/event-streams.ts STREAMS_PER_USER_MAX, STREAMS_MAX, STREAM_POLL_MS */
  streamsPerUserMax: 5,
  streamsMax: 10_000,
  streamPollMs: 1_000,
  /** notify/dispatcher.ts */
  deliveryTimeoutMs: 5_000,
  inFlightPerWebhookMax: 256,
  inFlightMax: 1024,
  firstRetryMs: 1_000,
  retryGapMaxMs: 3_600_000,
  retryHorizonMs: 25 * 3_600_000,
} as const;

type ErrorStatus = keyof typeof ERROR_CODE_OF_STATUS;

function errors(statuses: ErrorStatus[], notes: Partial<Record<ErrorCode, string>> = {}) {
  return Object.fromEntries(
    statuses.map((status) => {
      const code = ERROR_CODE_OF_STATUS[status];
      return [String(status), { description: `${code}: ${notes[code] ?? errorDescription(code)}`, schema: errorResponse(code) }];
    }),
  ) as Record<string, OperationResponse>;
}

/** Every route of the app, with its request and response schemas. The contract tests use it too. */
export function apiOperations(options: OpenApiOptions): Operation[] {
  const { limits, openRate, bodyBytesMax, requestLimits } = options;
  const requestNote =
    requestLimits === undefined
      ? 'every other authenticated route shares one request bucket per user (REQUESTS_BURST, REQUESTS_PER_SECOND), and a user\'s requests in progress at once are bounded (REQUESTS_IN_FLIGHT_MAX)'
      : `every other authenticated route shares one request bucket per user, a burst of ${requestLimits.burst}, then ${requestLimits.perSecond} per second (REQUESTS_BURST, REQUESTS_PER_SECOND); at most ${requestLimits.inFlightMax} requests of one user in progress at once (REQUESTS_IN_FLIGHT_MAX), past it 429 at once`;
  const rateNote = `opens are limited per user to a burst of ${openRate.burst}, then ${openRate.perSecond} per second (OPEN_BURST, OPENS_PER_SECOND); ${requestNote}`;
  const bodyNote = `the body is larger than ${bodyBytesMax} bytes (BODY_BYTES_MAX)`;
  const v1Errors = (extra: ErrorStatus[] = [], notes: Partial<Record<ErrorCode, string>> = {}) =>
    errors(([400, 401, 403, 404, 429, 500, 503] as ErrorStatus[]).concat(extra).sort((a, b) => a - b), { rate_limited: rateNote, payload_too_large: bodyNote, ...notes });
  const n = NOTIFICATION_NUMBERS;
  const lastEventId = z
    .string()
    .min(1)
    .max(EVENT_ID_LENGTH_MAX)
    .describe('the id of the last event the client saw: the stream resumes after it, with no gap (EventSource sends it on a reconnect by itself)');
  return [
    {
      method: 'post',
      path: '/v1/wallet/deposits',
      summary: 'Fund a balance (admin)',
      description: 'Stands in for a bank top-up.',
      access: 'admin',
      idempotencyKey: true,
      body: depositBodySchema,
      responses: { '201': { description: 'funded', schema: depositResponse }, ...v1Errors([409, 413]) },
    },
    {
      method: 'get',
      path: '/v1/wallet',
      summary: 'My balance',
      access: 'user',
      responses: { '200': { description: 'the caller’s wallet', schema: walletResponse }, ...v1Errors() },
    },
    {
      method: 'post',
      path: '/v1/packets',
      summary: 'Send a packet',
      description:
        `The balance is debited at once (402 and nothing changes if short). Limits: 1 to ${limits.countMax} shares, ` +
        `each share ${formatFen(limits.shareFenMin)} to ${formatFen(limits.shareFenMax)} yuan, a greeting of at most ` +
        `${limits.greetingLengthMax} characters, at most ${MEMBERS_MAX} members; the packet stays open ${limits.ttlMs} ms after it goes live.`,
      access: 'user',
      idempotencyKey: true,
      body: sendBodySchema(limits),
      responses: { '201': { description: 'sent', schema: sendResponse }, ...v1Errors([402, 409, 413]) },
    },
    {
      method: 'post',
      path: '/v1/packets/{id}/payment/return',
      summary: 'Forward the provider’s synchronous return (sender only)',
      description:
        'The signed result the payment sheet gave the sender’s app. Success makes the packet awaiting_funds (openable, claims held until the ' +
        'funds are confirmed); failure cancels it. A payload that does not verify, or is for another order → 400 and nothing changes; repeating it changes nothing.',
      access: 'user',
      packetId: true,
      body: paymentReturnBodySchema,
      responses: { '200': { description: 'the packet after the return', schema: paymentReturnResponse }, ...v1Errors([413]) },
    },
    {
      method: 'post',
      path: '/v1/payments/{provider}/notify',
      summary: 'The provider’s asynchronous notification (no bearer token)',
      description:
        'Verified by its signature headers (sandbox: X-Sandbox-Timestamp, X-Sandbox-Nonce, X-Sandbox-Signature, Ed25519 over timestamp\\nnonce\\nbody). ' +
        'A bad signature, a timestamp outside ±5 minutes or a nonce seen before → 401 and nothing changes; a valid one (also a repeat) → 200. The provider retries anything else.',
      access: 'public',
      providerParameter: true,
      responses: {
        '200': { description: 'accepted', schema: notifyResponse },
        ...errors([400, 401, 404, 413, 503] as ErrorStatus[], { payload_too_large: bodyNote }),
      },
    },
    {
      method: 'post',
      path: '/v1/packets/{id}/grab',
      summary: '抢: may I open it?',
      description: 'Changes nothing.',
      access: 'user',
      packetId: true,
      responses: { '200': { description: 'the state for the caller', schema: grabResponse }, ...v1Errors() },
    },
    {
      method: 'post',
      path: '/v1/packets/{id}/open',
      summary: '拆: claim a share',
      description: `Opening twice never pays twice. Rate limited: ${rateNote.split(';')[0]}.`,
      access: 'user',
      packetId: true,
      responses: { '200': { description: 'the outcome', schema: openResponse }, ...v1Errors() },
    },
    {
      method: 'get',
      path: '/v1/packets/{id}',
      summary: 'The result page for the caller',
      description: 'Its sender and anyone who may open it may view it; others get 403.',
      access: 'user',
      packetId: true,
      responses: { '200': { description: 'the page', schema: resultPageResponse }, ...v1Errors() },
    },
    {
      method: 'get',
      path: '/v1/me/sent',
      summary: 'Packets I sent',
      access: 'user',
      query: recordsQuerySchema,
      responses: { '200': { description: 'one page of records', schema: sentRecordsResponse }, ...v1Errors() },
    },
    {
      method: 'get',
      path: '/v1/me/received',
      summary: 'Shares I received',
      access: 'user',
      query: recordsQuerySchema,
      responses: { '200': { description: 'one page of records', schema: receivedRecordsResponse }, ...v1Errors() },
    },
    {
      method: 'post',
      path: '/v1/admin/reconcile',
      summary: '对账: run reconciliation now (admin)',
      access: 'admin',
      responses: { '200': { description: 'the report', schema: reconcileResponse }, ...v1Errors() },
    },
    {
      method: 'get',
      path: '/v1/admin/cluster',
      summary: 'The nodes of the cluster and the slots each owns (admin)',
      description:
        'Each packet belongs to one slot, and each slot to one engine node at a time. Any node accepts any request: ' +
        'grab, open and the result page of a packet owned by another node are passed to it, and its answer is returned as it is.',
      access: 'admin',
      responses: { '200': { description: 'the cluster as this node sees it', schema: clusterResponse }, ...v1Errors() },
    },
    {
      method: 'post',
      path: '/v1/admin/webhooks',
      summary: 'Register a webhook (admin)',
      description:
        'Each event (of the types asked for, or every type) is POSTed to url as JSON {id, type, createdAt, data} (see `webhooks` of this document) with ' +
        'Hongbao-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with this webhook’s secret>. Delivered at least once, in order per packet, ' +
        `a 2xx counting as delivered; anything else, or no answer within ${n.deliveryTimeoutMs / 1000} s, is retried with exponential backoff and jitter ` +
        `(${n.firstRetryMs / 1000} s doubling, gaps capped at ${n.retryGapMaxMs / 3_600_000} h) for ${n.retryHorizonMs / 3_600_000} h. At most ${n.inFlightPerWebhookMax} deliveries ` +
        'in flight to one webhook. Only events that happen after it is registered are delivered to it. http and https only; unless WEBHOOK_ALLOW_PRIVATE (default: ' +
        'true, but false when NODE_ENV=production), a URL whose host is loopback, private or link-local is refused (400), and every delivery refuses to connect to such an address after DNS.',
      access: 'admin',
      body: webhookBodySchema,
      responses: {
        '201': { description: 'registered', schema: webhookCreatedResponse },
        ...v1Errors([413], { invalid_request: 'not JSON, a URL that is not http/https, has credentials, is longer than 2048 characters or (WEBHOOK_ALLOW_PRIVATE=false) not public, an unknown or repeated event type, or an empty events list; details lists the problems' }),
      },
    },
    {
      method: 'get',
      path: '/v1/admin/webhooks',
      summary: 'The registered webhooks (admin)',
      access: 'admin',
      responses: { '200': { description: 'every webhook, without its secret', schema: webhookListResponse }, ...v1Errors() },
    },
    {
      method: 'delete',
      path: '/v1/admin/webhooks/{id}',
      summary: 'Delete a webhook (admin)',
      description: 'Nothing more is delivered to it: its pending deliveries are dropped (an attempt already in flight may still arrive).',
      access: 'admin',
      webhookId: true,
      responses: { '200': { description: 'deleted', schema: webhookDeletedResponse }, ...v1Errors([], { not_found: 'no such webhook (also when it was deleted already)' }) },
    },
    {
      method: 'get',
      path: '/v1/me/events',
      summary: 'My live event stream (Server-Sent Events)',
      description:
        'The events that concern the caller, each with its id. As a packet’s sender: packet.sent, packet.live, packet.opened, packet.finished, packet.expired, ' +
        'packet.cancelled, and wallet.credited with reason late_credit; as an opener: wallet.credited (reason claim) for each share credited to them. ' +
        'Without Last-Event-ID the stream starts from now (nothing older is sent); with it, every event after that one comes first, oldest first, with no gap and ' +
        'no repeat. Each frame\'s data is the JSON body a webhook gets (see `webhooks` of this document); the data fields of each type: ' +
        `${notificationDataSummary()}. An idle stream gets a comment every ${KEEP_ALIVE_MS / 1000} s. Events another process stored arrive within ${n.streamPollMs / 1000} s. ` +
        `At most ${n.streamsPerUserMax} streams per user and ${n.streamsMax} per process; past either 429 at once.`,
      access: 'user',
      headers: [{ name: 'Last-Event-ID', description: 'resume after this event (SSE)', schema: lastEventId }],
      query: z.object({ lastEventId: lastEventId.optional().describe('the same as the Last-Event-ID header, for clients that cannot set it; the header wins') }),
      responses: {
        '200': { description: 'the stream, open until the client leaves', schema: eventStreamResponse, contentType: 'text/event-stream' },
        ...v1Errors([], {
          invalid_request: `Last-Event-ID names no event of the caller’s (an event of someone else’s is unknown too), or is not 1–${EVENT_ID_LENGTH_MAX} characters`,
          rate_limited: `${n.streamsPerUserMax} streams of this user are open already, or ${n.streamsMax} on this process (Retry-After: 5); or ${requestNote}`,
        }),
      },
    },
    {
      method: 'get',
      path: '/healthz',
      summary: 'The process runs',
      access: 'public',
      responses: { '200': { description: 'alive', schema: healthResponse } },
    },
    {
      method: 'get',
      path: '/readyz',
      summary: 'It can serve (log and database reachable, recovery done)',
      access: 'public',
      responses: {
        '200': { description: 'ready', schema: readyResponse },
        '503': { description: 'unavailable: not ready yet, or a dependency is down', schema: errorResponse('unavailable') },
      },
    },
    {
      method: 'get',
      path: '/metrics',
      summary: 'Prometheus metrics',
      access: 'public',
      responses: { '200': { description: 'metrics', schema: metricsResponse, contentType: 'text/plain' } },
    },
    {
      method: 'get',
      path: '/openapi.json',
      summary: 'This document',
      access: 'public',
      responses: { '200': { description: 'the OpenAPI 3.1 document', schema: openApiResponse } },
    },
  ];
}

/** JSON Schema 2020-12 (OpenAPI 3.1's dialect) of a zod schema, without its `$schema` line. */
function jsonSchemaOf(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input', unrepresentable: 'throw' });
  return rest;
}

function parametersOf(operation: Operation) {
  const parameters: object[] = [];
  if (operation.providerParameter) {
    parameters.push({
      name: 'provider',
      in: 'path',
      required: true,
      description: 'the payment provider (sandbox); another name is 404',
      schema: { type: 'string', enum: PAY_WITH.filter((name) => name !== 'balance'), description: 'a payment provider of payWith' },
    });
  }
  if (operation.webhookId) {
    parameters.push({
      name: 'id',
      in: 'path',
      required: true,
      description: 'the webhook id, as returned by POST /v1/admin/webhooks; another is 404',
      schema: { type: 'string', description: 'a webhook id (wh_…)' },
    });
  }
  if (operation.packetId) {
    parameters.push({
      name: 'id',
      in: 'path',
      required: true,
      description: 'the packet id; an id this API could not have issued is 404',
      schema: { type: 'string', pattern: PACKET_ID_PATTERN, description: 'a packet id as returned by POST /v1/packets' },
    });
  }
  if (operation.idempotencyKey) {
    const schema = jsonSchemaOf(idempotencyKeySchema);
    parameters.push({ name: 'Idempotency-Key', in: 'header', required: true, description: schema.description, schema });
  }
  for (const header of operation.headers ?? []) {
    parameters.push({ name: header.name, in: 'header', required: header.required ?? false, description: header.description, schema: jsonSchemaOf(header.schema) });
  }
  if (operation.query) {
    const query = jsonSchemaOf(operation.query) as { properties: Record<string, { description?: string }>; required?: string[] };
    for (const [name, schema] of Object.entries(query.properties)) {
      parameters.push({ name, in: 'query', required: query.required?.includes(name) ?? false, description: schema.description, schema });
    }
  }
  return parameters;
}

/** OpenAPI 3.1 `webhooks`: what this service POSTs to a registered webhook, one entry per event type. */
function webhookItems() {
  const n = NOTIFICATION_NUMBERS;
  return Object.fromEntries(
    NOTIFICATION_TYPES.map((type) => [
      type,
      {
        post: {
          summary: `${type}, POSTed to every webhook that asked for it`,
          description:
            'The same JSON is the data of its frame on GET /v1/me/events. Check Hongbao-Signature before trusting the body, and deduplicate on id: ' +
            'delivery is at least once, so an event may come again (a timeout, a restart), always with the same id.',
          security: [],
          parameters: [
            {
              name: 'Hongbao-Signature',
              in: 'header',
              required: true,
              description: 't=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" keyed with the webhook’s secret>; reject a t more than 5 minutes from your clock',
              schema: { type: 'string', pattern: '^t=[0-9]+,v1=[0-9a-f]{64}$', description: 'the signature of this attempt (each attempt is signed anew)' },
            },
          ],
          requestBody: { required: true, content: { 'application/json': { schema: jsonSchemaOf(notificationEventSchemas[type]) } } },
          responses: {
            '2XX': { description: 'delivered: it is not sent to this webhook again' },
            default: {
              description:
                `anything else, or no answer within ${n.deliveryTimeoutMs / 1000} s: retried with exponential backoff and jitter (${n.firstRetryMs / 1000} s doubling, ` +
                `gaps capped at ${n.retryGapMaxMs / 3_600_000} h) for ${n.retryHorizonMs / 3_600_000} h after it was scheduled, then given up (dead); the next event of its packet waits for it`,
            },
          },
        },
      },
    ]),
  );
}

export function openApiDocument(options: OpenApiOptions) {
  const { limits, openRate, bodyBytesMax } = options;
  const paths: Record<string, Record<string, object>> = {};
  for (const operation of apiOperations(options)) {
    const parameters = parametersOf(operation);
    paths[operation.path] ??= {};
    paths[operation.path]![operation.method] = {
      summary: operation.summary,
      ...(operation.description !== undefined ? { description: operation.description } : {}),
      ...(operation.access === 'public' ? { security: [] } : {}),
      ...(operation.access === 'admin' ? { 'x-admin': true } : {}),
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(operation.body !== undefined
        ? { requestBody: { required: true, content: { 'application/json': { schema: jsonSchemaOf(operation.body) } } } }
        : {}),
      responses: Object.fromEntries(
        Object.entries(operation.responses).map(([status, response]) => [
          status,
          { description: response.description, content: { [response.contentType ?? 'application/json']: { schema: jsonSchemaOf(response.schema) } } },
        ]),
      ),
    };
  }
  return {
    openapi: '3.1.0',
    webhooks: webhookItems(),
    info: {
      title: 'hongbao',
      version: '1.0.0',
      description:
        'Red packets (红包) for chat apps (docs/api.md). Money is yuan strings with at most two decimals in, exactly two out. ' +
        `This deployment: 1 to ${limits.countMax} shares per packet, each share ${formatFen(limits.shareFenMin)} to ` +
        `${formatFen(limits.shareFenMax)} yuan, greetings of at most ${limits.greetingLengthMax} characters, packets open for ` +
        `${limits.ttlMs} ms, opens per user a burst of ${openRate.burst} then ${openRate.perSecond}/s, request bodies at most ${bodyBytesMax} bytes.`,
      'x-limits': {
        countMax: limits.countMax,
        shareAmountMin: formatFen(limits.shareFenMin),
        shareAmountMax: formatFen(limits.shareFenMax),
        greetingLengthMax: limits.greetingLengthMax,
        membersMax: MEMBERS_MAX,
        packetTtlMs: limits.ttlMs,
        openBurst: openRate.burst,
        opensPerSecond: openRate.perSecond,
        bodyBytesMax,
      },
    },
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'HS256 JWT signed with AUTH_SECRET; sub = the user id; "role": "admin" for admin routes (x-admin)' },
      },
    },
    security: [{ bearer: [] }],
    paths,
  };
}
