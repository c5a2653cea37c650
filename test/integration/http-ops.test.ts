// Proves the operations routes (healthz, readyz incl. 503, metrics, openapi, admin reconcile incl. a corrupted book), 404s for unknown routes, and that bad input never gets a 500 or a malformed error.
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../support/harness.js';
import { apiClient, expectError } from '../support/http-client.js';


let h: Harness;
const { newKey, fund, sendOk, reconcile, expectConserved } = apiClient(() => h, 'ops');

beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

const ERROR_CODES = [
  'invalid_request',
  'unauthorized',
  'insufficient_balance',
  'forbidden',
  'not_found',
  'idempotency_conflict',
  'payload_too_large',
  'rate_limited',
  'unavailable',
];






describe('health, readiness, metrics, OpenAPI', () => {
  it('GET /healthz → 200 and GET /readyz → 200, without a token', async () => {
    const health = await h.call('GET', '/healthz');
    expect(health.status).toBe(200);
    const ready = await h.call('GET', '/readyz');
    expect(ready.status).toBe(200);
  });

  it('GET /metrics is Prometheus text with hongbao_opens_total counting opens by state', async () => {
    await fund('met-s', '5.00');
    const packet = await sendOk('met-s', { type: 'group_fixed', targetId: 'met-g', count: 1, amount: '1.00' });
    expect((await h.call('POST', `/v1/packets/${packet.id}/open`, { user: 'met-1' })).body.state).toBe('claimed');
    expect((await h.call('POST', `/v1/packets/${packet.id}/open`, { user: 'met-2' })).body.state).toBe('sold_out');
    const response = await h.app.request('/metrics');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await response.text();
    expect(text).toContain('# TYPE hongbao_opens_total counter');
    expect(text).toMatch(/^hongbao_opens_total\{state="claimed"\} [1-9]\d*$/m);
    expect(text).toMatch(/^hongbao_opens_total\{state="sold_out"\} [1-9]\d*$/m);
    expect(text).toContain('hongbao_http_requests_total');
  });

  it('GET /metrics: things that only grow are counters named _total, latencies are histograms, the ledger lag is a gauge', async () => {
    await fund('met2-s', '5.00');
    const packet = await sendOk('met2-s', { type: 'group_fixed', targetId: 'met2-g', count: 2, amount: '1.00' });
    expect((await h.call('POST', `/v1/packets/${packet.id}/open`, { user: 'met2-1' })).body.state).toBe('claimed');
    await h.settle();
    const text = await (await h.app.request('/metrics')).text();
    const typeOf = (name: string) => new RegExp(`^# TYPE ${name} (\\w+)$`, 'm').exec(text)?.[1];
    for (const counter of [
      'hongbao_log_appends_total',
      'hongbao_log_events_appended_total',
      'hongbao_ledger_events_applied_total',
      'hongbao_ledger_failed_batches_total',
      'hongbao_cache_failures_total',
      'hongbao_ledger_conflicts_total',
      'hongbao_http_requests_total',
    ]) {
      expect(typeOf(counter), counter).toBe('counter');
    }
    for (const histogram of ['hongbao_open_duration_seconds', 'hongbao_send_duration_seconds', 'hongbao_ledger_apply_duration_seconds', 'hongbao_http_request_duration_seconds']) {
      expect(typeOf(histogram), histogram).toBe('histogram');
      expect(text).toMatch(new RegExp(`^${histogram}_count(\\{[^}]*\\})? [1-9]\\d*$`, 'm'));
    }
    expect(typeOf('hongbao_ledger_lag_events')).toBe('gauge');
    // Settled: the ledger has applied everything the log holds.
    expect(text).toMatch(/^hongbao_ledger_lag_events 0$/m);
    expect(text).toMatch(/^hongbao_log_events_appended_total [1-9]\d*$/m);
    // No counter poses as a gauge any more.
    expect(text).not.toMatch(/^# TYPE hongbao_\w+(?<!_total) counter$/m);
  });

  it('GET /openapi.json lists every path of API.md', async () => {
    const reply = await h.call('GET', '/openapi.json');
    expect(reply.status).toBe(200);
    expect(reply.body.openapi).toMatch(/^3\./);
    const paths = reply.body.paths as Record<string, Record<string, unknown>>;
    const expected: [string, string][] = [
      ['/v1/wallet/deposits', 'post'],
      ['/v1/wallet', 'get'],
      ['/v1/packets', 'post'],
      ['/v1/packets/{id}/grab', 'post'],
      ['/v1/packets/{id}/open', 'post'],
      ['/v1/packets/{id}', 'get'],
      ['/v1/me/sent', 'get'],
      ['/v1/me/received', 'get'],
      ['/v1/admin/reconcile', 'post'],
      ['/healthz', 'get'],
      ['/readyz', 'get'],
      ['/metrics', 'get'],
    ];
    for (const [path, method] of expected) expect(paths[path], path).toHaveProperty(method);
    const errorStatuses = Object.keys((paths['/v1/packets']!.post as { responses: object }).responses);
    for (const status of ['201', '400', '401', '402', '409', '413', '429', '503']) expect(errorStatuses).toContain(status);
  });
});

describe('unknown routes → 404 {"error":{"code":"not_found"}}', () => {
  it.each([
    ['GET', '/'],
    ['GET', '/nope'],
    ['GET', '/v2/wallet'],
    ['POST', '/healthz/x'],
    ['GET', '/openapi.yaml'],
  ])('%s %s (no token needed)', async (method, path) => {
    expectError(await h.call(method, path), 404, 'not_found');
  });

  it.each([
    ['GET', '/v1/nope'],
    ['GET', '/v1'],
    ['GET', '/v1/'],
    ['DELETE', '/v1/wallet'],
    ['PUT', '/v1/packets'],
    ['GET', '/v1/packets'],
    ['GET', '/v1/wallet/deposits'],
    ['GET', '/v1/admin/reconcile'],
    ['POST', '/v1/me/sent'],
    ['PATCH', '/v1/packets/p_x'],
    ['GET', '/v1/packets/p_x/open'],
    ['POST', '/v1/packets/p_x/close'],
  ])('%s %s with a token', async (method, path) => {
    expectError(await h.call(method, path, { user: 'ops-u' }), 404, 'not_found');
  });
});

describe('POST /v1/admin/reconcile', () => {
  it('is admin only', async () => {
    expectError(await h.call('POST', '/v1/admin/reconcile'), 401, 'unauthorized');
    expectError(await h.call('POST', '/v1/admin/reconcile', { user: 'ops-u' }), 403, 'forbidden');
  });

  it('reports no discrepancies after a busy scenario', async () => {
    const senders = ['busy-a', 'busy-b', 'busy-c', 'busy-d'];
    for (const sender of senders) await fund(sender, '300.00');
    const packets = await Promise.all(
      senders.flatMap((sender, index) => [
        sendOk(sender, { type: 'group_lucky', targetId: 'busy-g', count: 10, amount: '33.33' }),
        sendOk(sender, { type: 'group_lucky', targetId: 'busy-g', count: 3, amount: '0.03' }),
        sendOk(sender, { type: 'group_fixed', targetId: 'busy-g', count: 5, amount: '1.11' }),
        sendOk(sender, { type: 'personal', targetId: senders[(index + 1) % senders.length]!, count: 1, amount: '2.22' }),
      ]),
    );
    const users = [...senders, ...Array.from({ length: 12 }, (_, index) => `busy-u${index}`)];
    const opens = await Promise.all(packets.flatMap((packet) => users.map((user) => h.call('POST', `/v1/packets/${packet.id}/open`, { user }))));
    for (const reply of opens) {
      expect(reply.status).toBe(200);
      expect(['claimed', 'sold_out', 'not_eligible']).toContain(reply.body.state);
    }
    // Grabs and repeated opens on top change nothing.
    await Promise.all(packets.flatMap((packet) => users.slice(0, 6).map((user) => h.call('POST', `/v1/packets/${packet.id}/grab`, { user }))));
    await Promise.all(packets.map((packet) => h.call('POST', `/v1/packets/${packet.id}/open`, { user: 'busy-u0' })));
    await h.settle();
    const report = await reconcile();
    expect(report.status).toBe(200);
    expect(report.body.discrepancies).toEqual([]);
    expect(report.body.checkedPackets).toBeGreaterThanOrEqual(packets.length);
    expect(report.body.checkedAccounts).toBeGreaterThan(senders.length);
    await expectConserved();
  });

  it('reports a deliberately corrupted book, and is clean again once it is repaired', async () => {
    await fund('corrupt-x', '10.00');
    const packet = await sendOk('corrupt-x', { type: 'group_fixed', targetId: 'corrupt-g', count: 2, amount: '1.00' });
    await expectConserved();
    const db = h.hongbao.database;
    try {
      await db.execute(sql`update accounts set balance_fen = balance_fen + 1 where id = 'wallet:corrupt-x'`);
      const wallet = await reconcile();
      expect(wallet.status).toBe(200);
      expect(wallet.body.discrepancies).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ kind: 'account', id: 'wallet:corrupt-x' }),
          expect.objectContaining({ kind: 'book' }),
        ]),
      );
      for (const discrepancy of wallet.body.discrepancies) expect(typeof discrepancy.message).toBe('string');
    } finally {
      await db.execute(sql`update accounts set balance_fen = balance_fen - 1 where id = 'wallet:corrupt-x'`);
    }
    expect((await reconcile()).body.discrepancies).toEqual([]);

    // Escrow moved without a transfer: the packet and its account both disagree.
    try {
      await db.execute(sql`update accounts set balance_fen = balance_fen - 5 where id = ${`escrow:${packet.id}`}`);
      await db.execute(sql`update accounts set balance_fen = balance_fen + 5 where id = 'wallet:corrupt-x'`);
      const escrow = await reconcile();
      expect(escrow.body.discrepancies).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ kind: 'packet', id: packet.id }),
          expect.objectContaining({ kind: 'account', id: `escrow:${packet.id}` }),
          expect.objectContaining({ kind: 'account', id: 'wallet:corrupt-x' }),
        ]),
      );
      expect(escrow.body.discrepancies.some((discrepancy: any) => discrepancy.kind === 'book')).toBe(false);
    } finally {
      await db.execute(sql`update accounts set balance_fen = balance_fen + 5 where id = ${`escrow:${packet.id}`}`);
      await db.execute(sql`update accounts set balance_fen = balance_fen - 5 where id = 'wallet:corrupt-x'`);
    }
    // A claim recorded without its transfer.
    try {
      await db.execute(sql`insert into claims (packet_id, seq, user_id, amount_fen, claimed_at) values (${packet.id}, 2, 'ghost', 100, now())`);
      const claim = await reconcile();
      expect(claim.body.discrepancies).toEqual([expect.objectContaining({ kind: 'packet', id: packet.id })]);
    } finally {
      await db.execute(sql`delete from claims where packet_id = ${packet.id} and user_id = 'ghost'`);
    }
    await expectConserved();
  });
});

describe('every error has the {"error":{code,message}} shape and bad input is never a 500', () => {
  it('a barrage of bad requests on every route answers 4xx with a known code', async () => {
    await fund('fuzz-s', '10.00');
    const packet = await sendOk('fuzz-s', { type: 'group_lucky', targetId: 'fuzz-g', count: 2, amount: '1.00' });
    const bodies: (string | undefined)[] = [
      undefined,
      '',
      '{',
      'null',
      '[]',
      '"x"',
      '0',
      '{"__proto__":{"admin":true}}',
      '{"type":{"$gt":""},"targetId":["a"],"count":{"n":1},"amount":["1"]}',
      JSON.stringify({ type: 'group_lucky', targetId: 'g', count: 1e308, amount: '1.00' }),
      JSON.stringify({ type: 'group_lucky', targetId: 'g', count: 2, amount: '999999999999.99' }),
      JSON.stringify({ type: 'group_lucky', targetId: 'g', count: 2, amount: '1.00', greeting: '\u0000\uD800' }),
      JSON.stringify({ userId: 'fuzz-s', amount: '999999999999.999' }),
      '\uFEFF{"a":1}',
      'x'.repeat(20_000),
    ];
    const routes: [string, string][] = [
      ['POST', '/v1/wallet/deposits'],
      ['POST', '/v1/packets'],
      ['POST', `/v1/packets/${packet.id}/grab`],
      ['POST', `/v1/packets/${packet.id}/open`],
      ['GET', '/v1/wallet'],
      ['GET', `/v1/packets/${packet.id}`],
      ['GET', '/v1/me/sent?year=%00&cursor=%FF'],
      ['GET', '/v1/me/received?year=99999999999999999999'],
      ['POST', '/v1/admin/reconcile'],
      ['POST', '/v1/packets/%E0%A4%A/open'],
    ];
    const contentTypes = ['application/json', 'text/plain', 'application/json; charset=utf-16'];
    let errors = 0;
    for (const [method, path] of routes) {
      for (const body of bodies) {
        for (const contentType of contentTypes) {
          const init: RequestInit = {
            method,
            headers: { authorization: `Bearer ${await h.token('fuzz-s', true)}`, 'content-type': contentType, 'idempotency-key': newKey() },
          };
          if (body !== undefined && method !== 'GET') init.body = body;
          const response = await h.app.request(path, init);
          const text = await response.text();
          expect(response.status, `${method} ${path} ${body?.slice(0, 40)} → ${text}`).toBeLessThan(500);
          if (response.status >= 400) {
            errors += 1;
            const parsed = JSON.parse(text);
            expect(Object.keys(parsed)).toEqual(['error']);
            expect(ERROR_CODES).toContain(parsed.error.code);
            expect(typeof parsed.error.message).toBe('string');
          }
        }
      }
    }
    expect(errors).toBeGreaterThan(100);
    await expectConserved();
  });
});

describe('503 unavailable', () => {
  it('a ledger-only process (ROLE=ledger) is ready but serves no API request: no second engine on the log', async () => {
    const ledgerOnly = await startHarness({ servesPackets: false });
    try {
      expect((await ledgerOnly.call('GET', '/readyz')).status).toBe(200);
      for (const [method, path] of [['POST', '/v1/packets/p_x/open'], ['POST', '/v1/packets/p_x/grab'], ['GET', '/v1/wallet']] as const) {
        const reply = await ledgerOnly.call(method, path, { user: 'ops-ledger' });
        expectError(reply, 503, 'unavailable');
        expect(reply.body.error.message).toMatch(/ROLE=ledger/);
      }
    } finally {
      await ledgerOnly.stop();
    }
  });

  it('GET /readyz → 503 {"error":{"code":"unavailable"}} once the service is stopped', async () => {
    const stopping = await startHarness();
    let stopped = false;
    try {
      expect((await stopping.call('GET', '/readyz')).status).toBe(200);
      await stopping.stop();
      stopped = true;
      expectError(await stopping.call('GET', '/readyz'), 503, 'unavailable');
      expect((await stopping.call('GET', '/healthz')).status).toBe(200);
    } finally {
      if (!stopped) await stopping.stop();
    }
  });
});
