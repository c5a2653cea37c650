// GET /openapi.json: the contract of API.md as an OpenAPI 3.1 document.
const money = { type: 'string', pattern: '^(0|[1-9][0-9]{0,11})(\\.[0-9]{1,2})?$', example: '12.34' };
const error = {
  type: 'object',
  properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' }, details: {} } } },
};
const packet = {
  type: 'object',
  properties: {
    id: { type: 'string' }, type: { enum: ['personal', 'group_fixed', 'group_lucky'] }, senderId: { type: 'string' },
    targetId: { type: 'string' }, count: { type: 'integer' }, total: money, greeting: { type: 'string' },
    status: { enum: ['live', 'finished', 'expired'] }, createdAt: { type: 'string', format: 'date-time' },
    expiresAt: { type: 'string', format: 'date-time' }, claimedCount: { type: 'integer' }, claimedAmount: money,
  },
};
const json = (schema: object) => ({ content: { 'application/json': { schema } } });
const errors = Object.fromEntries(
  ['400', '401', '402', '403', '404', '409', '413', '429', '503'].map((status) => [status, { description: 'error', ...json(error) }]),
);
const idempotencyHeader = { name: 'Idempotency-Key', in: 'header', required: true, schema: { type: 'string', minLength: 1, maxLength: 100 } };
const packetIdParameter = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };
const yearQuery = [
  { name: 'year', in: 'query', schema: { type: 'integer' } },
  { name: 'cursor', in: 'query', schema: { type: 'string' } },
];

export const openApiDocument = {
  openapi: '3.1.0',
  info: { title: 'hongbao', version: '1.0.0', description: 'Red packets (红包) for chat apps. Money is yuan strings with two decimals.' },
  components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
  security: [{ bearer: [] }],
  paths: {
    '/v1/wallet/deposits': {
      post: {
        summary: 'Fund a balance (admin)', parameters: [idempotencyHeader],
        requestBody: json({ type: 'object', required: ['userId', 'amount'], properties: { userId: { type: 'string' }, amount: money } }),
        responses: { '201': { description: 'funded', ...json({ type: 'object', properties: { userId: { type: 'string' }, balance: money } }) }, ...errors },
      },
    },
    '/v1/wallet': {
      get: { summary: 'My balance', responses: { '200': { description: 'balance', ...json({ type: 'object', properties: { userId: { type: 'string' }, balance: money, pending: money } }) }, ...errors } },
    },
    '/v1/packets': {
      post: {
        summary: 'Send a packet', parameters: [idempotencyHeader],
        requestBody: json({
          type: 'object', required: ['type', 'targetId', 'count', 'amount'],
          properties: {
            type: { enum: ['personal', 'group_fixed', 'group_lucky'] }, targetId: { type: 'string' }, count: { type: 'integer', minimum: 1, maximum: 100 },
            amount: money, greeting: { type: 'string', maxLength: 100 }, members: { type: 'array', items: { type: 'string' } },
          },
        }),
        responses: { '201': { description: 'sent', ...json({ type: 'object', properties: { packet } }) }, ...errors },
      },
    },
    '/v1/packets/{id}/grab': {
      post: { summary: '抢: may I open it?', parameters: [packetIdParameter], responses: { '200': { description: 'state', ...json({ type: 'object', properties: { state: { enum: ['openable', 'claimed', 'sold_out', 'expired', 'not_eligible'] }, amount: money } }) }, ...errors } },
    },
    '/v1/packets/{id}/open': {
      post: { summary: '拆: claim a share', parameters: [packetIdParameter], responses: { '200': { description: 'outcome', ...json({ type: 'object', properties: { state: { enum: ['claimed', 'already_claimed', 'sold_out', 'expired', 'not_eligible', 'busy'] }, amount: money, seq: { type: 'integer' }, retryAfterMs: { type: 'integer' } } }) }, ...errors } },
    },
    '/v1/packets/{id}': {
      get: { summary: 'Result page for the caller', parameters: [packetIdParameter], responses: { '200': { description: 'page', ...json({ type: 'object', properties: { packet, summary: { type: 'string' }, myAmount: money, claims: { type: 'array' }, actions: { type: 'array', items: { enum: ['resend', 'view_my_records'] } }, notice: { type: 'string' } } }) }, ...errors } },
    },
    '/v1/me/sent': { get: { summary: 'Packets I sent', parameters: yearQuery, responses: { '200': { description: 'records' }, ...errors } } },
    '/v1/me/received': { get: { summary: 'Shares I received', parameters: yearQuery, responses: { '200': { description: 'records' }, ...errors } } },
    '/v1/admin/reconcile': { post: { summary: 'Run reconciliation now (admin)', responses: { '200': { description: 'report' }, ...errors } } },
    '/healthz': { get: { security: [], summary: 'Process runs', responses: { '200': { description: 'ok' } } } },
    '/readyz': { get: { security: [], summary: 'Can serve', responses: { '200': { description: 'ready' }, '503': { description: 'not ready' } } } },
    '/metrics': { get: { security: [], summary: 'Prometheus metrics', responses: { '200': { description: 'text' } } } },
  },
} as const;
