// Proves GET /openapi.json is a valid OpenAPI 3.1 document (checked by a real validator), that
// every schema property and parameter in it is described, that it lists exactly the routes the
// hono app registers, that it states the configured limits, which the service enforces, and
// that it documents every notification event type (OpenAPI `webhooks`) with the numbers the
// notification code really uses.
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_BODY_BYTES_MAX } from '../../src/config.js';
import { DEFAULT_OPEN_RATE, DEFAULT_REQUEST_RATE, DEFAULT_REQUESTS_IN_FLIGHT_MAX } from '../../src/engine/rate-limit.js';
import { DEFAULT_LIMITS, type Limits } from '../../src/domain/limits.js';
import { NOTIFICATION_TYPES } from '../../src/domain/notification.js';
import { STREAM_POLL_MS, STREAMS_MAX, STREAMS_PER_USER_MAX } from '../../src/app/event-streams.js';
import { NOTIFICATION_NUMBERS, openApiDocument } from '../../src/http/openapi.js';
import { KEEP_ALIVE_MS } from '../../src/http/routes/notifications.js';
import {
  DELIVERY_TIMEOUT_MS,
  FIRST_RETRY_MS,
  IN_FLIGHT_MAX,
  IN_FLIGHT_PER_WEBHOOK_MAX,
  RETRY_GAP_MAX_MS,
  RETRY_HORIZON_MS,
} from '../../src/notify/dispatcher.js';
import { startHarness, type Harness } from '../support/harness.js';

type Json = Record<string, any>;

/** Every place in the document where a property lacks a description, as JSON pointers. */
function undescribed(document: Json): string[] {
  const missing: string[] = [];
  const walkSchema = (schema: unknown, at: string): void => {
    if (schema === null || typeof schema !== 'object') return;
    const node = schema as Json;
    for (const [name, property] of Object.entries((node.properties ?? {}) as Json)) {
      if (typeof property?.description !== 'string' || property.description.trim() === '') missing.push(`${at}/properties/${name}`);
      walkSchema(property, `${at}/properties/${name}`);
    }
    if (node.items !== undefined) walkSchema(node.items, `${at}/items`);
    if (typeof node.additionalProperties === 'object') walkSchema(node.additionalProperties, `${at}/additionalProperties`);
    for (const key of ['anyOf', 'oneOf', 'allOf'] as const) {
      (node[key] as unknown[] | undefined)?.forEach((branch, index) => walkSchema(branch, `${at}/${key}/${index}`));
    }
  };
  const items = [
    ...Object.entries(document.paths as Json).map(([path, item]) => [`#/paths/${path}`, item] as const),
    ...Object.entries((document.webhooks ?? {}) as Json).map(([name, item]) => [`#/webhooks/${name}`, item] as const),
  ];
  for (const [where, item] of items) {
    for (const [method, operation] of Object.entries(item as Json)) {
      const at = `${where}/${method}`;
      (operation.parameters ?? []).forEach((parameter: Json, index: number) => {
        if (typeof parameter.description !== 'string' || parameter.description === '') missing.push(`${at}/parameters/${index}`);
        walkSchema(parameter.schema, `${at}/parameters/${index}/schema`);
      });
      for (const [type, media] of Object.entries((operation.requestBody?.content ?? {}) as Json)) {
        walkSchema(media.schema, `${at}/requestBody/${type}`);
      }
      for (const [status, response] of Object.entries(operation.responses as Json)) {
        for (const [type, media] of Object.entries((response.content ?? {}) as Json)) walkSchema(media.schema, `${at}/responses/${status}/${type}`);
      }
    }
  }
  return missing;
}

const defaults = () =>
  openApiDocument({
    limits: DEFAULT_LIMITS,
    openRate: DEFAULT_OPEN_RATE,
    requestLimits: { ...DEFAULT_REQUEST_RATE, inFlightMax: DEFAULT_REQUESTS_IN_FLIGHT_MAX },
    bodyBytesMax: DEFAULT_BODY_BYTES_MAX,
  });
const sendBodyOf = (document: Json) => document.paths['/v1/packets'].post.requestBody.content['application/json'].schema;

let h: Harness;
let served: Json;

beforeAll(async () => {
  h = await startHarness({ requestRate: DEFAULT_REQUEST_RATE }); // the production defaults, as nothing configured
  const reply = await h.call('GET', '/openapi.json');
  expect(reply.status).toBe(200);
  served = reply.body;
});
afterAll(async () => {
  await h?.stop();
});

describe('GET /openapi.json', () => {
  it('is valid OpenAPI 3.1 for the validator', async () => {
    const validator = new Validator();
    const result = await validator.validate(structuredClone(served));
    expect(result.errors ?? [], JSON.stringify(result.errors, null, 2)).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
  });

  it('the validator is not a rubber stamp: it rejects a response without a description (of a route or a webhook)', async () => {
    const broken = structuredClone(served);
    delete broken.paths['/v1/wallet'].get.responses['200'].description;
    const result = await new Validator().validate(broken);
    expect(result.valid).toBe(false);
    const brokenWebhook = structuredClone(served);
    delete brokenWebhook.webhooks['packet.sent'].post.responses['2XX'].description;
    expect((await new Validator().validate(brokenWebhook)).valid).toBe(false);
  });

  it('describes every schema property and every parameter', () => {
    expect(undescribed(served)).toEqual([]);
  });

  it('the description walk finds an undescribed property, nested in a union, an array or a parameter', () => {
    const broken = structuredClone(served);
    delete broken.webhooks['packet.finished'].post.requestBody.content['application/json'].schema.properties.data.properties.bestLuck.anyOf[0].properties.seq.description;
    delete broken.paths['/v1/packets/{id}/open'].post.responses['200'].content['application/json'].schema.oneOf[2].properties.retryAfterMs.description;
    delete broken.paths['/v1/me/received'].get.responses['200'].content['application/json'].schema.properties.items.items.properties.best.description;
    delete broken.paths['/v1/me/sent'].get.parameters[0].description;
    expect(undescribed(broken)).toEqual([
      '#/paths//v1/packets/{id}/open/post/responses/200/application/json/oneOf/2/properties/retryAfterMs',
      '#/paths//v1/me/sent/get/parameters/0',
      '#/paths//v1/me/received/get/responses/200/application/json/properties/items/items/properties/best',
      '#/webhooks/packet.finished/post/requestBody/application/json/properties/data/properties/bestLuck/anyOf/0/properties/seq',
    ]);
  });

  it('lists exactly the routes the hono app registers', () => {
    const registered = new Set(
      h.app.routes
        .filter((route) => route.method !== 'ALL') // middleware and the 404 catch-alls
        .map((route) => `${route.method.toLowerCase()} ${route.path.replace(/:([A-Za-z]+)/g, '{$1}')}`),
    );
    const documented = new Set(
      Object.entries(served.paths as Json).flatMap(([path, item]) => Object.keys(item as Json).map((method) => `${method} ${path}`)),
    );
    expect(registered.size).toBeGreaterThanOrEqual(13);
    expect([...registered].filter((route) => !documented.has(route))).toEqual([]);
    expect([...documented].filter((route) => !registered.has(route))).toEqual([]);
  });

  it('documents every notification event type as a webhook, signed, with its data fields, also on the stream route', () => {
    expect(Object.keys(served.webhooks)).toEqual([...NOTIFICATION_TYPES]);
    for (const type of NOTIFICATION_TYPES) {
      const operation = served.webhooks[type].post;
      expect(operation.parameters.map((parameter: Json) => parameter.name)).toEqual(['Hongbao-Signature']);
      const body = operation.requestBody.content['application/json'].schema;
      expect(body.required).toEqual(['id', 'type', 'createdAt', 'data']);
      expect(body.properties.type.const).toBe(type);
      const data = body.properties.data;
      const fields = (data.oneOf ?? [data]).flatMap((shape: Json) => Object.keys(shape.properties));
      expect(fields.length, type).toBeGreaterThan(0);
      const stream = served.paths['/v1/me/events'].get;
      const listed = new RegExp(`${type.replace('.', '\\.')} \\{([^}]*)\\}`).exec(stream.description)?.[1]?.split(', ').map((field) => field.replace(/\?$/, ''));
      expect(listed, type).toEqual([...new Set(fields)]);
    }
    const events = served.paths['/v1/me/events'].get;
    expect(Object.keys(events.responses['200'].content)).toEqual(['text/event-stream']);
    expect(events.parameters.map((parameter: Json) => `${parameter.in} ${parameter.name}`)).toEqual(['header Last-Event-ID', 'query lastEventId']);
  });

  it('states the notification numbers the code uses', () => {
    expect(NOTIFICATION_NUMBERS).toEqual({
      streamsPerUserMax: STREAMS_PER_USER_MAX,
      streamsMax: STREAMS_MAX,
      streamPollMs: STREAM_POLL_MS,
      deliveryTimeoutMs: DELIVERY_TIMEOUT_MS,
      inFlightPerWebhookMax: IN_FLIGHT_PER_WEBHOOK_MAX,
      inFlightMax: IN_FLIGHT_MAX,
      firstRetryMs: FIRST_RETRY_MS,
      retryGapMaxMs: RETRY_GAP_MAX_MS,
      retryHorizonMs: RETRY_HORIZON_MS,
    });
    const events = served.paths['/v1/me/events'].get;
    expect(events.description).toContain(`At most ${STREAMS_PER_USER_MAX} streams per user and ${STREAMS_MAX} per process`);
    expect(events.description).toContain(`a comment every ${KEEP_ALIVE_MS / 1000} s`);
    expect(served.paths['/v1/admin/webhooks'].post.description).toContain(`At most ${IN_FLIGHT_PER_WEBHOOK_MAX} deliveries in flight to one webhook`);
  });

  it('gives every route a response schema for each status it documents, and a bearer requirement to /v1 only (but the provider’s notify route, which is signed instead)', () => {
    for (const [path, item] of Object.entries(served.paths as Json)) {
      for (const [method, operation] of Object.entries(item as Json)) {
        const statuses = Object.keys(operation.responses);
        expect(statuses.some((status) => status.startsWith('2')), `${method} ${path}`).toBe(true);
        for (const status of statuses) {
          const content = operation.responses[status].content as Json;
          const schemas = Object.values(content).map((media: Json) => media.schema);
          expect(schemas.length, `${method} ${path} ${status}`).toBe(1);
          expect(typeof schemas[0].description, `${method} ${path} ${status}`).toBe('string');
        }
        const signedByProvider = path === '/v1/payments/{provider}/notify';
        expect(operation.security === undefined, `${method} ${path}`).toBe(path.startsWith('/v1/') && !signedByProvider);
      }
    }
  });

  it('is the document of the default limits when nothing is configured', () => {
    expect(served).toEqual(JSON.parse(JSON.stringify(defaults())));
    const body = sendBodyOf(served);
    expect(body.properties.count.maximum).toBe(100);
    expect(body.properties.greeting.maxLength).toBe(100);
    expect(body.properties.amount.description).toMatch(/from count × 0\.01 to count × 200\.00/);
    expect(body.required).toEqual(['type', 'targetId', 'count', 'amount']);
    expect(served.info['x-limits']).toEqual({
      countMax: 100,
      shareAmountMin: '0.01',
      shareAmountMax: '200.00',
      greetingLengthMax: 100,
      membersMax: 500,
      packetTtlMs: 86_400_000,
      openBurst: 100,
      opensPerSecond: 20,
      bodyBytesMax: 16_384,
    });
  });

  it('states configured limits: the schemas that mention them are built from them', () => {
    const limits: Limits = { countMax: 7, shareFenMin: 50, shareFenMax: 1234, greetingLengthMax: 12, ttlMs: 60_000 };
    const document = openApiDocument({ limits, openRate: { burst: 3, perSecond: 0.5 }, bodyBytesMax: 4096 }) as Json;
    const body = sendBodyOf(document);
    expect(body.properties.count.maximum).toBe(7);
    expect(body.properties.greeting.maxLength).toBe(12);
    expect(body.properties.amount.description).toMatch(/group_lucky: the total, from count × 0\.50 to count × 12\.34/);
    expect(body.properties.amount.description).toMatch(/each share, from 0\.50 to 12\.34/);
    const open = document.paths['/v1/packets/{id}/open'].post;
    expect(open.responses['429'].description).toMatch(/burst of 3, then 0\.5 per second/);
    expect(document.paths['/v1/packets'].post.responses['413'].description).toMatch(/4096 bytes/);
    expect(document.info.description).toMatch(/open for 60000 ms/);
  });

  it('a service started with other limits serves their document and enforces them', async () => {
    const limits: Limits = { countMax: 3, shareFenMin: 10, shareFenMax: 500, greetingLengthMax: 10, ttlMs: 3_600_000 };
    const small = await startHarness({ limits });
    try {
      const document = (await small.call('GET', '/openapi.json')).body;
      expect(sendBodyOf(document).properties.count.maximum).toBe(3);
      expect(document.info['x-limits']).toMatchObject({ countMax: 3, shareAmountMin: '0.10', shareAmountMax: '5.00', greetingLengthMax: 10, packetTtlMs: 3_600_000 });
      const deposit = await small.call('POST', '/v1/wallet/deposits', { user: 'ops', admin: true, body: { userId: 'cfg-a', amount: '100.00' }, headers: { 'idempotency-key': 'cfg-1' } });
      expect(deposit.status).toBe(201);
      const send = (body: object, key: string) => small.call('POST', '/v1/packets', { user: 'cfg-a', body, headers: { 'idempotency-key': key } });
      const tooMany = await send({ type: 'group_fixed', targetId: 'cfg-g', count: 4, amount: '1.00' }, 'cfg-2');
      expect(tooMany.status).toBe(400);
      expect(tooMany.body.error.message).toMatch(/count must be at most 3/);
      const tooSmall = await send({ type: 'group_fixed', targetId: 'cfg-g', count: 2, amount: '0.09' }, 'cfg-3');
      expect(tooSmall.body.error.message).toMatch(/each share must be between 0\.10 and 5\.00/);
      const longGreeting = await send({ type: 'group_fixed', targetId: 'cfg-g', count: 2, amount: '1.00', greeting: '恭喜发财,大吉大利!!' }, 'cfg-4');
      expect(longGreeting.body.error.message).toMatch(/greeting must be at most 10 characters/);
      const ok = await send({ type: 'group_fixed', targetId: 'cfg-g', count: 3, amount: '5.00', greeting: '恭喜发财,大吉大利!' }, 'cfg-5');
      expect(ok.status, JSON.stringify(ok.body)).toBe(201);
      expect(Date.parse(ok.body.packet.expiresAt) - Date.parse(ok.body.packet.createdAt)).toBe(3_600_000);
    } finally {
      await small.stop();
    }
  });
});
