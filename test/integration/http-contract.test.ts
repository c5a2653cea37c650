// Proves the response schemas of the OpenAPI document describe what the routes really return:
// one flow through every route (deposit, each packet type, grab, open, result pages as sender
// and opener, wallet, records, reconcile, operations, and errors), each response parsed with
// its route's zod schema for its status, and with no field the schema does not document.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_BODY_BYTES_MAX } from '../../src/config.js';
import { DEFAULT_OPEN_RATE } from '../../src/engine/rate-limit.js';
import { DEFAULT_LIMITS } from '../../src/domain/limits.js';
import { apiOperations, type Operation } from '../../src/http/openapi.js';
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

/** Calls a route, expects `status`, and checks the body against the documented schema of that status. */
async function checked(method: string, path: string, status: number, options: CallOptions = {}): Promise<any> {
  const reply = await h.call(method, path, options);
  expect(reply.status, `${method} ${path} → ${JSON.stringify(reply.body)}`).toBe(status);
  const operation = operationOf(method, path);
  const response = operation.responses[String(status)];
  expect(response, `${method} ${path} does not document ${status}`).toBeDefined();
  const parsed = response!.schema.safeParse(reply.body);
  expect(parsed.success, `${method} ${path} ${status}: ${parsed.error?.message} in ${JSON.stringify(reply.body)}`).toBe(true);
  // z.object drops keys it does not know: equality means every field is documented.
  expect(parsed.data, `${method} ${path} ${status} has undocumented fields`).toEqual(reply.body);
  seen.add(`${operation.method} ${operation.path} ${status}`);
  return reply.body;
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
    const notFound = operationOf('GET', '/v1/packets/p').responses['404']!.schema;
    expect(notFound.safeParse({ error: { code: 'forbidden', message: 'x' } }).success).toBe(false);
  });
});
