// Proves the response schemas of the OpenAPI document describe what the routes really return:
// one flow through every route (deposit, each packet type, grab, open, result pages as sender
// and opener, wallet, records, reconcile, operations, webhooks and the live event stream, and
// errors), each response parsed with its route's zod schema for its status, and with no field
// the schema does not document; and every event the notifier derives, of every type, against
// the documented event schema of its type.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_BODY_BYTES_MAX } from '../../src/config.js';
import { DEFAULT_OPEN_RATE } from '../../src/engine/rate-limit.js';
import { DEFAULT_LIMITS } from '../../src/domain/limits.js';
import { NOTIFICATION_TYPES, sentEvent, type NotificationEvent } from '../../src/domain/notification.js';
import type { Claim, Packet } from '../../src/domain/packet.js';
import { apiOperations, type Operation } from '../../src/http/openapi.js';
import { notificationEventSchema, notificationEventSchemas } from '../../src/http/schemas.js';
import type { Fen } from '../../src/money/money.js';
import { deriveNotifications } from '../../src/notify/derive.js';
import { startHarness, type Harness } from '../support/harness.js';
import { payInSandbox, signedNotification } from '../support/payments.js';

const operations = apiOperations({ limits: DEFAULT_LIMITS, openRate: DEFAULT_OPEN_RATE, bodyBytesMax: DEFAULT_BODY_BYTES_MAX });
/** "method template status" of every response the flow saw. */
const seen = new Set<string>();

function operationOf(method: string, path: string): Operation {
  const bare = path.split('?')[0]!;
  const found = operations.find(
    (operation) =>
      operation.method === method.toLowerCase() &&
      new RegExp(`^${operation.path.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(bare),
  );
  if (found === undefined) throw new Error(`no documented operation for ${method} ${path}`);
  return found;
}

type CallOptions = Parameters<Harness['call']>[2];

let h: Harness;
let keySeq = 0;
const key = () => ({ 'idempotency-key': `contract-${++keySeq}` });

/** Checks a body against the documented schema of its route and status, with no undocumented field. */
function documented(method: string, path: string, status: number, body: unknown, contentType?: string): void {
  const operation = operationOf(method, path);
  const response = operation.responses[String(status)];
  expect(response, `${method} ${path} does not document ${status}`).toBeDefined();
  if (contentType !== undefined) expect(contentType, `${method} ${path} ${status}`).toMatch(new RegExp(`^${response!.contentType ?? 'application/json'}(;|$)`));
  const parsed = response!.schema.safeParse(body);
  expect(parsed.success, `${method} ${path} ${status}: ${parsed.error?.message} in ${JSON.stringify(body)}`).toBe(true);
  // z.object drops keys it does not know: equality means every field is documented.
  expect(parsed.data, `${method} ${path} ${status} has undocumented fields`).toEqual(body);
  seen.add(`${operation.method} ${operation.path} ${status}`);
}

/** Calls a route, expects `status`, and checks the body against the documented schema of that status. */
async function checked(method: string, path: string, status: number, options: CallOptions = {}): Promise<any> {
  const reply = await h.call(method, path, options);
  expect(reply.status, `${method} ${path} → ${JSON.stringify(reply.body)}`).toBe(status);
  documented(method, path, status, reply.body);
  return reply.body;
}

/** An event as documented: its type's schema, and no field that schema does not name. */
function documentedEvent(event: unknown): any {
  const parsed = notificationEventSchema.safeParse(event);
  expect(parsed.success, `${parsed.error?.message} in ${JSON.stringify(event)}`).toBe(true);
  expect(parsed.data, `undocumented fields in ${JSON.stringify(event)}`).toEqual(event);
  return parsed.data;
}

interface Frame {
  readonly comment?: string;
  readonly event?: string;
  readonly data?: string;
  readonly id?: string;
}

/** GET /v1/me/events, read frame by frame as it streams (app.request hands back the live body). */
async function openStream(user: string, headers: Record<string, string> = {}, path = '/v1/me/events') {
  const response = await h.app.request(path, { headers: { authorization: `Bearer ${await h.token(user)}`, ...headers } });
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let text = '';
  const frames: Frame[] = [];
  return {
    response,
    frames,
    /** Everything read so far. */
    text: () => text,
    /** Reads until `count` event frames (not comments) have come in all. */
    async events(count: number, timeoutMs = 15_000): Promise<Frame[]> {
      const deadline = Date.now() + timeoutMs;
      while (frames.filter((frame) => frame.event !== undefined).length < count) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`${user}'s stream: ${count} events not within ${timeoutMs} ms (got ${JSON.stringify(frames)})`);
        let timer: NodeJS.Timeout | undefined;
        const chunk = await Promise.race([reader.read(), new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), left)))]);
        clearTimeout(timer);
        if (chunk === null) continue;
        if (chunk.done) throw new Error(`${user}'s stream ended`);
        const piece = decoder.decode(chunk.value, { stream: true });
        text += piece;
        buffer += piece;
        for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const frame: Record<string, string> = {};
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) frame.comment = line.slice(1).trim();
            else {
              const colon = line.indexOf(':');
              frame[line.slice(0, colon)] = line.slice(colon + 1).replace(/^ /, '');
            }
          }
          frames.push(frame);
        }
      }
      return frames.filter((frame) => frame.event !== undefined);
    },
    /** Reads until the event with this id has come; every event frame so far. */
    async until(id: string): Promise<Frame[]> {
      for (let count = 1; ; count += 1) {
        const events = await this.events(count);
        if (events.some((frame) => frame.id === id)) return events;
      }
    },
    close: () => reader.cancel(),
  };
}

/** Each event frame: its `event:` is the type, its `id:` the id, its `data:` the documented JSON. */
function documentedFrames(frames: readonly Frame[]): any[] {
  return frames.map((frame) => {
    const event = documentedEvent(JSON.parse(frame.data!));
    expect(frame.event).toBe(event.type);
    expect(frame.id).toBe(event.id);
    return event;
  });
}

beforeAll(async () => {
  h = await startHarness({ withSandbox: {} });
});
afterAll(async () => {
  await h?.stop();
});

describe('every response matches its route’s documented schema', () => {
  it('one flow through every route', async () => {
    const admin = { user: 'c-ops', admin: true };
    const deposit = await checked('POST', '/v1/wallet/deposits', 201, { ...admin, body: { userId: 'c-alice', amount: '100.00' }, headers: key() });
    expect(deposit).toEqual({ userId: 'c-alice', balance: '100.00' });

    const send = (body: object) => checked('POST', '/v1/packets', 201, { user: 'c-alice', body, headers: key() });
    const personal = (await send({ type: 'personal', targetId: 'c-bob', count: 1, amount: '1.50', greeting: '给你' })).packet;
    const fixed = (await send({ type: 'group_fixed', targetId: 'c-g', count: 2, amount: '2.00', members: ['c-bob', 'c-carol', 'c-alice'] })).packet;
    const lucky = (await send({ type: 'group_lucky', targetId: 'c-g', count: 3, amount: '3.00' })).packet;
    expect([personal.total, fixed.total, lucky.total]).toEqual(['1.50', '4.00', '3.00']);
    expect(fixed.members).toEqual(['c-bob', 'c-carol', 'c-alice']);

    // 抢 before and after 拆, and every outcome of 拆 but busy.
    expect((await checked('POST', `/v1/packets/${lucky.id}/grab`, 200, { user: 'c-bob' })).state).toBe('openable');
    for (const packet of [personal, fixed, lucky]) {
      const opened = await checked('POST', `/v1/packets/${packet.id}/open`, 200, { user: 'c-bob' });
      expect(opened.state).toBe('claimed');
      expect(opened.seq).toBe(1);
    }
    expect(await checked('POST', `/v1/packets/${lucky.id}/grab`, 200, { user: 'c-bob' })).toMatchObject({ state: 'claimed' });
    expect((await checked('POST', `/v1/packets/${lucky.id}/open`, 200, { user: 'c-bob' })).state).toBe('already_claimed');
    expect((await checked('POST', `/v1/packets/${personal.id}/open`, 200, { user: 'c-carol' })).state).toBe('not_eligible');
    expect((await checked('POST', `/v1/packets/${fixed.id}/grab`, 200, { user: 'c-dave' })).state).toBe('not_eligible');
    expect((await checked('POST', `/v1/packets/${fixed.id}/open`, 200, { user: 'c-carol' })).state).toBe('claimed');
    expect((await checked('POST', `/v1/packets/${fixed.id}/open`, 200, { user: 'c-alice' })).state).toBe('sold_out');
    expect((await checked('POST', `/v1/packets/${fixed.id}/grab`, 200, { user: 'c-alice' })).state).toBe('sold_out');
    for (const user of ['c-carol', 'c-dave']) await checked('POST', `/v1/packets/${lucky.id}/open`, 200, { user });

    // Result pages as sender and as opener: finished and live, lucky, fixed and personal.
    for (const packet of [personal, fixed, lucky]) {
      const own = await checked('GET', `/v1/packets/${packet.id}`, 200, { user: 'c-alice' });
      expect(own.packet.total).toBe(packet.total);
      const opener = await checked('GET', `/v1/packets/${packet.id}`, 200, { user: 'c-bob' });
      expect(opener.myAmount).toMatch(/^\d+\.\d\d$/);
      expect(opener.actions).toEqual(['view_my_records']);
    }
    const finishedLucky = await checked('GET', `/v1/packets/${lucky.id}`, 200, { user: 'c-bob' });
    expect(finishedLucky.claims.filter((claim: { best: boolean }) => claim.best)).toHaveLength(1);
    const live = (await send({ type: 'group_lucky', targetId: 'c-g', count: 2, amount: '0.50' })).packet;
    expect((await checked('GET', `/v1/packets/${live.id}`, 200, { user: 'c-alice' })).actions).toEqual(['resend']);
    expect((await checked('GET', `/v1/packets/${live.id}`, 200, { user: 'c-bob' })).packet.total).toBeUndefined();

    // Paid through the sandbox: pending_payment, the return, opens while awaiting funds, the notification.
    const paid = await send({ type: 'group_lucky', targetId: 'c-g', count: 2, amount: '2.00', payWith: 'sandbox' });
    expect(paid.packet.status).toBe('pending_payment');
    expect((await checked('POST', `/v1/packets/${paid.packet.id}/open`, 200, { user: 'c-bob' })).state).toBe('pending_payment');
    expect((await checked('POST', `/v1/packets/${paid.packet.id}/grab`, 200, { user: 'c-bob' })).state).toBe('pending_payment');
    const returnPayload = await payInSandbox(h, paid.payment, 'success', 'never');
    const returned = await checked('POST', `/v1/packets/${paid.packet.id}/payment/return`, 200, { user: 'c-alice', body: { returnPayload } });
    expect(returned.packet.status).toBe('awaiting_funds');
    await checked('POST', `/v1/packets/${paid.packet.id}/open`, 200, { user: 'c-bob' });
    await h.settle();
    const held = await checked('GET', `/v1/packets/${paid.packet.id}`, 200, { user: 'c-alice' });
    expect(held.claims[0].credited).toBe(false);
    const notified = signedNotification(h, { orderId: paid.payment.orderId, status: 'paid', amount: '2.00' });
    expect(await checked('POST', '/v1/payments/sandbox/notify', 200, { body: notified.body, headers: notified.headers })).toEqual({ code: 'SUCCESS' });
    await checked('POST', '/v1/payments/sandbox/notify', 401, { body: notified.body, headers: notified.headers });
    await checked('POST', `/v1/packets/${paid.packet.id}/payment/return`, 400, { user: 'c-alice', body: { returnPayload: 'forged' } });
    const cancelled = await send({ type: 'personal', targetId: 'c-bob', count: 1, amount: '1.00', payWith: 'sandbox' });
    const failed = await payInSandbox(h, cancelled.payment, 'fail', 'never');
    await checked('POST', `/v1/packets/${cancelled.packet.id}/payment/return`, 200, { user: 'c-alice', body: { returnPayload: failed } });
    expect((await checked('POST', `/v1/packets/${cancelled.packet.id}/open`, 200, { user: 'c-bob' })).state).toBe('cancelled');

    // Wallet before and after the ledger caught up, records, reconciliation.
    await checked('GET', '/v1/wallet', 200, { user: 'c-bob' });
    await h.settle();
    const wallet = await checked('GET', '/v1/wallet', 200, { user: 'c-bob' });
    expect(wallet.pending).toBe('0.00');
    const sent = await checked('GET', '/v1/me/sent', 200, { user: 'c-alice' });
    // The cancelled packet is listed but sent no money: it is not counted.
    expect(sent.count).toBe(5);
    expect(sent.nextCursor).toBeNull();
    const received = await checked('GET', `/v1/me/received?year=${sent.year}`, 200, { user: 'c-bob' });
    expect(received.count).toBe(4);
    const report = await checked('POST', '/v1/admin/reconcile', 200, admin);
    expect(report.discrepancies).toEqual([]);
    const cluster = await checked('GET', '/v1/admin/cluster', 200, admin);
    expect(cluster.nodes.map((node: { id: string }) => node.id)).toContain(cluster.self);

    // Notifications: the webhook admin routes (no deliveries here: this harness runs no dispatcher).
    const hook = await checked('POST', '/v1/admin/webhooks', 201, { ...admin, body: { url: 'http://127.0.0.1:9/hooks', events: ['packet.opened', 'packet.finished'] } });
    expect(hook).toMatchObject({ url: 'http://127.0.0.1:9/hooks', events: ['packet.opened', 'packet.finished'] });
    expect(hook.secret).toMatch(/^whsec_/);
    const everything = await checked('POST', '/v1/admin/webhooks', 201, { ...admin, body: { url: 'https://hooks.example/hongbao' } });
    expect(everything.events).toEqual([...NOTIFICATION_TYPES]);
    const listed = await checked('GET', '/v1/admin/webhooks', 200, admin);
    expect(listed.webhooks.map((webhook: { id: string }) => webhook.id)).toEqual([hook.id, everything.id]);
    expect(await checked('DELETE', `/v1/admin/webhooks/${everything.id}`, 200, admin)).toEqual({ id: everything.id, deleted: true });
    await checked('DELETE', `/v1/admin/webhooks/${everything.id}`, 404, admin);
    await checked('POST', '/v1/admin/webhooks', 400, { ...admin, body: { url: 'ftp://hooks.example/h' } });
    await checked('POST', '/v1/admin/webhooks', 403, { user: 'c-bob', body: { url: 'https://hooks.example/h' } });
    await checked('GET', '/v1/admin/webhooks', 403, { user: 'c-bob' });

    // The live stream: it starts from now; an event for the caller comes as a frame.
    const stream = await openStream('c-bob');
    expect(stream.response.status).toBe(200);
    const next = (await send({ type: 'group_lucky', targetId: 'c-g', count: 2, amount: '0.50' })).packet;
    const nextOpen = await checked('POST', `/v1/packets/${next.id}/open`, 200, { user: 'c-bob' });
    // (Only events stored after it opened: the notifier may still have been storing older ones.)
    const credited = documentedFrames(await stream.until(`evt_credited_${next.id}_1`)).at(-1);
    await stream.close();
    expect(stream.frames[0]).toEqual({ comment: 'connected' });
    documented('GET', '/v1/me/events', 200, stream.text(), stream.response.headers.get('content-type') ?? '');
    expect(credited).toMatchObject({
      id: `evt_credited_${next.id}_1`,
      type: 'wallet.credited',
      data: { userId: 'c-bob', amount: nextOpen.amount, packetId: next.id, senderId: 'c-alice', seq: 1, reason: 'claim' },
    });
    // Resumed after an older event: what was stored after it, each once, up to the newest (the
    // order across packets is the order they were stored in: on Kafka, not the flow's).
    const resumed = await openStream('c-bob', { 'last-event-id': `evt_credited_${lucky.id}_1` });
    const after = documentedFrames(await resumed.until(`evt_credited_${next.id}_1`)).map((event) => event.id);
    await resumed.close();
    expect(new Set(after).size).toBe(after.length);
    expect(after).not.toContain(`evt_credited_${lucky.id}_1`);
    const bobs = [personal, fixed, lucky, paid.packet, next].map((packet) => `evt_credited_${packet.id}_1`);
    expect(after.filter((id) => !bobs.includes(id))).toEqual([]);
    // The sender's stream, resumed by the query parameter after the send: their packet was opened.
    const sender = await openStream('c-alice', {}, `/v1/me/events?lastEventId=evt_sent_${next.id}`);
    const opened = documentedFrames(await sender.until(`evt_opened_${next.id}_1`)).at(-1);
    await sender.close();
    expect(opened.data).toEqual({ packetId: next.id, senderId: 'c-alice', userId: 'c-bob', amount: nextOpen.amount, seq: 1, credited: true });
    await checked('GET', '/v1/me/events', 400, { user: 'c-bob', headers: { 'last-event-id': 'evt_nothing' } });
    // Someone else's event is unknown too.
    await checked('GET', `/v1/me/events?lastEventId=evt_opened_${lucky.id}_1`, 400, { user: 'c-bob' });
    const erin = await Promise.all(Array.from({ length: 5 }, () => openStream('c-erin')));
    expect(erin.map((one) => one.response.status)).toEqual([200, 200, 200, 200, 200]);
    await checked('GET', '/v1/me/events', 429, { user: 'c-erin' });
    for (const one of erin) await one.close();
    await checked('DELETE', `/v1/admin/webhooks/${hook.id}`, 200, admin);

    // Operations.
    await checked('GET', '/healthz', 200);
    await checked('GET', '/readyz', 200);
    expect(await checked('GET', '/metrics', 200)).toContain('hongbao_opens_total');
    await checked('GET', '/openapi.json', 200);

    // Errors: each with the code of its status.
    const details = await checked('POST', '/v1/packets', 400, { user: 'c-alice', body: { type: 'nope' }, headers: key() });
    expect(details.error.details.length).toBeGreaterThan(1);
    const rule = await checked('POST', '/v1/packets', 400, { user: 'c-alice', body: { type: 'group_fixed', targetId: 'c-g', count: 101, amount: '1.00' }, headers: key() });
    expect(rule.error.details).toEqual(['count must be at most 100']);
    await checked('GET', '/v1/wallet', 401);
    await checked('POST', '/v1/packets', 402, { user: 'c-poor', body: { type: 'group_lucky', targetId: 'c-g', count: 2, amount: '1.00' }, headers: key() });
    await checked('POST', '/v1/admin/reconcile', 403, { user: 'c-bob' });
    await checked('GET', '/v1/admin/cluster', 403, { user: 'c-bob' });
    await checked('GET', `/v1/packets/${personal.id}`, 403, { user: 'c-dave' });
    await checked('POST', '/v1/packets/p_nothing/open', 404, { user: 'c-bob' });
    const reused = key();
    await checked('POST', '/v1/wallet/deposits', 201, { ...admin, body: { userId: 'c-bob', amount: '1.00' }, headers: reused });
    await checked('POST', '/v1/wallet/deposits', 409, { ...admin, body: { userId: 'c-bob', amount: '2.00' }, headers: reused });
    await checked('POST', '/v1/packets', 413, { user: 'c-alice', body: { type: 'group_lucky', targetId: 'c-g', count: 2, amount: '1.00', greeting: 'x'.repeat(DEFAULT_BODY_BYTES_MAX) }, headers: key() });

    // The flow reached the success response of every documented route.
    const missed = operations
      .flatMap((operation) => Object.keys(operation.responses).filter((status) => status.startsWith('2')).map((status) => `${operation.method} ${operation.path} ${status}`))
      .filter((response) => !seen.has(response));
    expect(missed).toEqual([]);
  });

  it('429 rate_limited and 503 unavailable match their schemas too', async () => {
    const limited = await startHarness({ openLimiter: { take: () => false } });
    const previous = h;
    let stopped = false;
    h = limited;
    try {
      await checked('POST', '/v1/packets/p_any/open', 429, { user: 'c-bob' });
      await limited.stop();
      stopped = true;
      await checked('GET', '/readyz', 503);
      await checked('GET', '/v1/wallet', 503, { user: 'c-bob' });
    } finally {
      h = previous;
      if (!stopped) await limited.stop();
    }
  });

  it('every event the notifier derives, of every type, matches the documented schema of its type', () => {
    const at = 1_800_000_000_000;
    const packet = (id: string, type: Packet['type'], count: number, totalFen: number, paid = false): Packet => ({
      id, type, senderId: 'd-alice', targetId: 'd-g', count, totalFen: totalFen as Fen, greeting: '恭喜发财', members: null,
      createdAtMs: at, liveAtMs: at, expiresAtMs: at + 86_400_000, ...(paid ? { payment: { provider: 'sandbox', orderId: `hb_${id}` } } : {}),
    });
    const claim = (packetId: string, seq: number, amountFen: number): Claim => ({ packetId, seq, userId: `d-u${seq}`, amountFen: amountFen as Fen, claimedAtMs: at + seq * 1500 });
    const claimEvent = (c: Claim, held = false) => ({ kind: 'claim' as const, packetId: c.packetId, seq: c.seq, userId: c.userId, amountFen: c.amountFen, atMs: c.claimedAtMs, ...(held ? { held: true as const } : {}) });
    const payment = (p: Packet, change: 'funded' | 'cancelled' | 'late_credit', extra: object = {}) => ({
      kind: 'payment' as const, packetId: p.id, change, provider: 'sandbox', orderId: `hb_${p.id}`, senderId: p.senderId, amountFen: p.totalFen,
      liveAtMs: at + 1000, expiresAtMs: at + 86_401_000, atMs: at + 9000, ...extra,
    });
    const lucky = packet('d-lucky', 'group_lucky', 2, 300);
    const luckyClaims = [claim('d-lucky', 1, 100), claim('d-lucky', 2, 200)];
    const fixed = packet('d-fixed', 'group_fixed', 1, 100);
    const fixedClaims = [claim('d-fixed', 1, 100)];
    const expiring = packet('d-expiring', 'group_lucky', 3, 300);
    const funded = packet('d-funded', 'group_lucky', 2, 200, true);
    const fundedClaims = [claim('d-funded', 1, 50), claim('d-funded', 2, 150)];
    const cancelled = packet('d-cancelled', 'personal', 1, 100, true);
    const timedOut = packet('d-timeout', 'personal', 1, 100, true);
    const facts = new Map(
      [
        { packet: lucky, claims: luckyClaims },
        { packet: fixed, claims: fixedClaims },
        { packet: expiring, claims: [claim('d-expiring', 1, 120)] },
        { packet: funded, claims: fundedClaims },
        { packet: cancelled, claims: [] },
        { packet: timedOut, claims: [] },
      ].map((entry) => [entry.packet.id, { ...entry, claimedCount: entry.claims.length }] as const),
    );
    const derived: NotificationEvent[] = [
      sentEvent(lucky),
      sentEvent(funded),
      ...deriveNotifications(
        [
          ...luckyClaims.map((c) => claimEvent(c)),
          ...fixedClaims.map((c) => claimEvent(c)),
          claimEvent(claim('d-expiring', 1, 120)),
          { kind: 'expire', packetId: expiring.id, senderId: expiring.senderId, refundFen: 180 as Fen, atMs: at + 86_400_000 },
          ...fundedClaims.map((c) => claimEvent(c, true)),
          payment(funded, 'funded', { claimsBefore: 2 }),
          payment(cancelled, 'cancelled', { reason: 'payment_failed' }),
          payment(timedOut, 'cancelled', { reason: 'payment_timeout' }),
          payment(cancelled, 'late_credit'),
        ],
        (id) => facts.get(id),
      ),
    ];
    const asSent = derived.map((event) => documentedEvent({ id: event.id, type: event.type, createdAt: new Date(event.createdAtMs).toISOString(), data: event.data }));
    expect(new Set(asSent.map((event) => event.type))).toEqual(new Set(NOTIFICATION_TYPES));
    expect(new Set(asSent.filter((event) => event.type === 'wallet.credited').map((event) => event.data.reason))).toEqual(new Set(['claim', 'late_credit']));
    expect(asSent.filter((event) => event.type === 'packet.opened').map((event) => event.data.credited)).toContain(false);
    const finished = asSent.filter((event) => event.type === 'packet.finished');
    expect(finished.map((event) => event.data.bestLuck)).toEqual([{ userId: 'd-u2', amount: '2.00', seq: 2 }, null, { userId: 'd-u2', amount: '1.50', seq: 2 }]);
    // Each type's own schema, too (the webhooks of the document are generated from them).
    for (const event of asSent) expect(notificationEventSchemas[event.type as keyof typeof notificationEventSchemas].parse(event)).toEqual(event);
  });

  it('the check has teeth: an undocumented field or a wrong shape fails it', () => {
    const wallet = operationOf('GET', '/v1/wallet').responses['200']!.schema;
    const good = { userId: 'u', balance: '1.00', pending: '0.00' };
    expect(wallet.parse(good)).toEqual(good);
    expect(wallet.parse({ ...good, extra: 1 })).not.toEqual({ ...good, extra: 1 });
    expect(wallet.safeParse({ ...good, balance: '1.0' }).success).toBe(false);
    const open = operationOf('POST', '/v1/packets/p/open').responses['200']!.schema;
    expect(open.safeParse({ state: 'claimed', amount: '1.00' }).success).toBe(false); // seq missing
    expect(open.safeParse({ state: 'busy' }).success).toBe(false); // retryAfterMs missing
    expect(open.safeParse({ state: 'pending_payment' }).success).toBe(true);
    expect(open.safeParse({ state: 'awaiting_funds' }).success).toBe(false); // a packet status, not an open outcome
    const event = { id: 'evt_opened_p_1', type: 'packet.opened', createdAt: '2026-01-01T00:00:00.000Z', data: { packetId: 'p', senderId: 's', userId: 'u', amount: '1.00', seq: 1, credited: true } };
    expect(notificationEventSchema.parse(event)).toEqual(event);
    expect(notificationEventSchema.parse({ ...event, data: { ...event.data, extra: 1 } })).not.toEqual({ ...event, data: { ...event.data, extra: 1 } });
    expect(notificationEventSchema.safeParse({ ...event, type: 'packet.finished' }).success).toBe(false);
    expect(notificationEventSchema.safeParse({ ...event, data: { ...event.data, credited: undefined } }).success).toBe(false);
    const notFound = operationOf('GET', '/v1/packets/p').responses['404']!.schema;
    expect(notFound.safeParse({ error: { code: 'forbidden', message: 'x' } }).success).toBe(false);
  });
});
