// Proves auth (401/403), admin deposits (Idempotency-Key replay/conflict, strict money strings) and GET /v1/wallet (balance and pending) over HTTP.
import { sign } from 'hono/jwt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, TEST_SECRET, type Harness } from '../support/harness.js';
import { apiClient, expectError, type Reply } from '../support/http-client.js';

let h: Harness;
let keySeq = 0;
const newKey = () => `wallet-key-${++keySeq}`;
const { expectConserved } = apiClient(() => h, 'wallet');
/** The book once the ledger has applied everything: what "nothing changed" compares. */
async function settledMoney() {
  await h.settle();
  return h.money();
}

beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.stop();
});

/** key null sends no Idempotency-Key header. */
function depositAs(admin: string, userId: unknown, amount: unknown, key: string | null = newKey(), isAdmin = true) {
  return h.call('POST', '/v1/wallet/deposits', {
    user: admin,
    admin: isAdmin,
    body: { userId, amount },
    ...(key !== null ? { headers: { 'idempotency-key': key } } : {}),
  });
}

async function balanceOf(userId: string): Promise<string> {
  const reply = await h.call('GET', '/v1/wallet', { user: userId });
  expect(reply.status).toBe(200);
  return reply.body.balance;
}

/** Raw request with a given Authorization header (or none). */
async function rawAuth(path: string, method: string, authorization: string | undefined): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (authorization !== undefined) headers.authorization = authorization;
  const response = await h.app.request(path, { method, headers });
  return { status: response.status, body: await response.json() };
}

describe('authentication', () => {
  it('401 unauthorized without a token, with a malformed header, a bad signature, an expired token or a bad subject', async () => {
    const now = Math.floor(Date.now() / 1000);
    const expired = await sign({ sub: 'auth-u1', iat: now - 7200, exp: now - 3600 }, TEST_SECRET, 'HS256');
    const otherSecret = await sign({ sub: 'auth-u1', exp: now + 3600 }, 'some-other-secret', 'HS256');
    const noSubject = await sign({ exp: now + 3600 }, TEST_SECRET, 'HS256');
    const badSubject = await sign({ sub: 'has space', exp: now + 3600 }, TEST_SECRET, 'HS256');
    const longSubject = await sign({ sub: 'x'.repeat(65), exp: now + 3600 }, TEST_SECRET, 'HS256');
    const numericSubject = await sign({ sub: 42, exp: now + 3600 } as never, TEST_SECRET, 'HS256');
    const hs512 = await sign({ sub: 'auth-u1', exp: now + 3600 }, TEST_SECRET, 'HS512');
    const valid = await sign({ sub: 'auth-u1', exp: now + 3600 }, TEST_SECRET, 'HS256');
    const tampered = `${valid.slice(0, -4)}AAAA`;
    const headers = [
      undefined,
      '',
      'Bearer',
      'Bearer ',
      `Basic ${Buffer.from('a:b').toString('base64')}`,
      'Bearer not-a-jwt',
      `Bearer ${expired}`,
      `Bearer ${otherSecret}`,
      `Bearer ${noSubject}`,
      `Bearer ${badSubject}`,
      `Bearer ${longSubject}`,
      `Bearer ${numericSubject}`,
      `Bearer ${hs512}`,
      `Bearer ${tampered}`,
      `bearer${valid}`,
    ];
    const routes: [string, string][] = [
      ['GET', '/v1/wallet'],
      ['POST', '/v1/wallet/deposits'],
      ['POST', '/v1/packets'],
      ['POST', '/v1/packets/p_x/grab'],
      ['POST', '/v1/packets/p_x/open'],
      ['GET', '/v1/packets/p_x'],
      ['GET', '/v1/me/sent'],
      ['GET', '/v1/me/received'],
      ['POST', '/v1/admin/reconcile'],
      ['GET', '/v1/no-such-route'],
    ];
    for (const [method, path] of routes) {
      for (const authorization of headers) {
        const reply = await rawAuth(path, method, authorization);
        expectError(reply, 401, 'unauthorized');
      }
    }
    // The same token, unexpired and correctly signed, is accepted.
    const ok = await rawAuth('/v1/wallet', 'GET', `Bearer ${valid}`);
    expect(ok.status).toBe(200);
    expect(ok.body.userId).toBe('auth-u1');
  });

  it('401 for a token without exp or one that lives past the allowed lifetime; the Bearer scheme in any case', async () => {
    const now = Math.floor(Date.now() / 1000);
    const forever = await sign({ sub: 'auth-u2', iat: now }, TEST_SECRET, 'HS256');
    const tooLong = await sign({ sub: 'auth-u2', iat: now, exp: now + 8 * 24 * 3600 }, TEST_SECRET, 'HS256');
    const tooLongWithoutIat = await sign({ sub: 'auth-u2', exp: now + 8 * 24 * 3600 }, TEST_SECRET, 'HS256');
    for (const token of [forever, tooLong, tooLongWithoutIat]) {
      const reply = await rawAuth('/v1/wallet', 'GET', `Bearer ${token}`);
      expectError(reply, 401, 'unauthorized');
      expect(reply.body.error.message).toMatch(/exp|longer/);
    }
    // Within the default lifetime (7 days) is fine; RFC 7235: the scheme's case does not matter.
    const week = await sign({ sub: 'auth-u2', iat: now, exp: now + 7 * 24 * 3600 }, TEST_SECRET, 'HS256');
    for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) {
      const reply = await rawAuth('/v1/wallet', 'GET', `${scheme} ${week}`);
      expect(reply.status, scheme).toBe(200);
      expect(reply.body.userId).toBe('auth-u2');
    }
  });

  it('an expired admin token cannot deposit', async () => {
    const now = Math.floor(Date.now() / 1000);
    const expired = await sign({ sub: 'auth-admin', role: 'admin', exp: now - 1 }, TEST_SECRET, 'HS256');
    const response = await h.app.request('/v1/wallet/deposits', {
      method: 'POST',
      headers: { authorization: `Bearer ${expired}`, 'content-type': 'application/json', 'idempotency-key': newKey() },
      body: JSON.stringify({ userId: 'auth-u2', amount: '5.00' }),
    });
    expect(response.status).toBe(401);
    expect(await balanceOf('auth-u2')).toBe('0.00');
  });
});

describe('POST /v1/wallet/deposits', () => {
  it('credits the balance and answers 201 {userId, balance}', async () => {
    const first = await depositAs('admin1', 'dep-u1', '100.00');
    expect(first.status).toBe(201);
    expect(first.body).toEqual({ userId: 'dep-u1', balance: '100.00' });
    const second = await depositAs('admin1', 'dep-u1', '0.5');
    expect(second.status).toBe(201);
    expect(second.body).toEqual({ userId: 'dep-u1', balance: '100.50' });
    const third = await depositAs('admin1', 'dep-u1', '200');
    expect(third.body.balance).toBe('300.50');
    expect(await balanceOf('dep-u1')).toBe('300.50');
    await expectConserved();
  });

  it('403 forbidden for a non-admin token, and nothing changes', async () => {
    const before = await settledMoney();
    const reply = await depositAs('dep-plain', 'dep-plain', '100.00', newKey(), false);
    expectError(reply, 403, 'forbidden');
    // Also for a token whose role is something else than admin.
    const now = Math.floor(Date.now() / 1000);
    const token = await sign({ sub: 'dep-plain', role: 'superuser', exp: now + 60 }, TEST_SECRET, 'HS256');
    const response = await h.app.request('/v1/wallet/deposits', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': newKey() },
      body: JSON.stringify({ userId: 'dep-plain', amount: '1.00' }),
    });
    expect(response.status).toBe(403);
    expect(await balanceOf('dep-plain')).toBe('0.00');
    expect(await settledMoney()).toEqual(before);
  });

  it('400 when the Idempotency-Key is missing, empty or longer than 100 characters', async () => {
    const before = await settledMoney();
    expectError(await depositAs('admin1', 'dep-u2', '10.00', null), 400, 'invalid_request');
    expectError(await depositAs('admin1', 'dep-u2', '10.00', ''), 400, 'invalid_request');
    expectError(await depositAs('admin1', 'dep-u2', '10.00', 'k'.repeat(101)), 400, 'invalid_request');
    expect(await balanceOf('dep-u2')).toBe('0.00');
    expect(await settledMoney()).toEqual(before);
    // 100 characters is fine.
    const ok = await depositAs('admin1', 'dep-u2', '10.00', 'k'.repeat(100));
    expect(ok.status).toBe(201);
    expect(ok.body.balance).toBe('10.00');
  });

  it('same key + same body replays the first response and credits once', async () => {
    const key = newKey();
    const first = await depositAs('admin1', 'dep-u3', '12.34', key);
    expect(first.status).toBe(201);
    expect(first.body).toEqual({ userId: 'dep-u3', balance: '12.34' });
    // Another deposit in between: the replay is still the FIRST response.
    expect((await depositAs('admin1', 'dep-u3', '1.00')).body.balance).toBe('13.34');
    for (let i = 0; i < 3; i += 1) {
      const again = await depositAs('admin1', 'dep-u3', '12.34', key);
      expect(again.status).toBe(201);
      expect(again.body).toEqual(first.body);
    }
    expect(await balanceOf('dep-u3')).toBe('13.34');
    await expectConserved();
  });

  it('same key + same body racing itself still credits once', async () => {
    const key = newKey();
    const replies = await Promise.all(Array.from({ length: 8 }, () => depositAs('admin1', 'dep-race', '7.77', key)));
    for (const reply of replies) {
      expect(reply.status).toBe(201);
      expect(reply.body).toEqual({ userId: 'dep-race', balance: '7.77' });
    }
    expect(await balanceOf('dep-race')).toBe('7.77');
    await expectConserved();
  });

  it('same key + another body → 409 idempotency_conflict, and nothing changes', async () => {
    const key = newKey();
    expect((await depositAs('admin1', 'dep-u4', '5.00', key)).status).toBe(201);
    const before = await settledMoney();
    expectError(await depositAs('admin1', 'dep-u4', '6.00', key), 409, 'idempotency_conflict');
    expectError(await depositAs('admin1', 'dep-u5', '5.00', key), 409, 'idempotency_conflict');
    expect(await balanceOf('dep-u4')).toBe('5.00');
    expect(await balanceOf('dep-u5')).toBe('0.00');
    expect(await settledMoney()).toEqual(before);
    // Keys are scoped to the caller: another admin may use the same key for its own deposit.
    const other = await depositAs('admin2', 'dep-u5', '6.00', key);
    expect(other.status).toBe(201);
    expect(other.body.balance).toBe('6.00');
    await expectConserved();
  });

  it.each([
    ['"1e2"', '1e2'],
    ['"0.001"', '0.001'],
    ['"-1"', '-1'],
    ['" 1"', ' 1'],
    ['"1 "', '1 '],
    ['"NaN"', 'NaN'],
    ['"Infinity"', 'Infinity'],
    ['12.34 (a number)', 12.34],
    ['100 (a number)', 100],
    ['"0"', '0'],
    ['"0.00"', '0.00'],
    ['""', ''],
    ['"1."', '1.'],
    ['".5"', '.5'],
    ['"01"', '01'],
    ['"+1"', '+1'],
    ['"1,00"', '1,00'],
    ['"0x10"', '0x10'],
    ['"１"', '１'],
    ['"99999999999999999999"', '99999999999999999999'],
    ['null', null],
    ['true', true],
    ['an object', { yuan: 1 }],
    ['an array', ['1.00']],
  ])('amount %s → 400 invalid_request and nothing changes', async (_label, amount) => {
    const before = await settledMoney();
    const reply = await depositAs('admin1', 'dep-bad', amount);
    expectError(reply, 400, 'invalid_request');
    expect(await balanceOf('dep-bad')).toBe('0.00');
    expect(await settledMoney()).toEqual(before);
  });

  it('bad bodies → 400 invalid_request (never 500)', async () => {
    const before = await settledMoney();
    const bodies: unknown[] = [
      {},
      { userId: 'dep-bad' },
      { amount: '1.00' },
      { userId: '', amount: '1.00' },
      { userId: 'has space', amount: '1.00' },
      { userId: 'x'.repeat(65), amount: '1.00' },
      { userId: 7, amount: '1.00' },
      null,
      [],
      'just a string',
      42,
      '{"userId":',
    ];
    for (const body of bodies) {
      const reply = await h.call('POST', '/v1/wallet/deposits', {
        user: 'admin1',
        admin: true,
        body: typeof body === 'string' ? body : JSON.stringify(body),
        headers: { 'idempotency-key': newKey() },
      });
      expectError(reply, 400, 'invalid_request');
    }
    const notJson = await h.call('POST', '/v1/wallet/deposits', {
      user: 'admin1',
      admin: true,
      body: 'userId=dep-bad&amount=1.00',
      headers: { 'idempotency-key': newKey(), 'content-type': 'application/x-www-form-urlencoded' },
    });
    expectError(notJson, 400, 'invalid_request');
    expect(await settledMoney()).toEqual(before);
  });

  it('a deposit that would take a balance past what can be counted exactly → 400, and nothing changes', async () => {
    // 90 × 999999999999.99 fits below 2^53 fen; a 91st deposit would not.
    for (let index = 0; index < 90; index += 1) expect((await depositAs('admin1', 'dep-huge', '999999999999.99')).status).toBe(201);
    expect(await balanceOf('dep-huge')).toBe('89999999999999.10');
    const before = await settledMoney();
    const reply = await depositAs('admin1', 'dep-huge', '999999999999.99');
    expectError(reply, 400, 'invalid_request');
    expect(reply.body.error.message).toMatch(/out of range/);
    expect(await balanceOf('dep-huge')).toBe('89999999999999.10');
    expect(await settledMoney()).toEqual(before);
    // Smaller amounts still fit.
    expect((await depositAs('admin1', 'dep-huge', '0.01')).body.balance).toBe('89999999999999.11');
  });

  it('concurrent deposits with distinct keys to a fresh wallet all land', async () => {
    const replies = await Promise.all(Array.from({ length: 12 }, () => depositAs('admin1', 'dep-many', '1.01')));
    for (const reply of replies) expect(reply.status).toBe(201);
    expect(replies.map((reply) => reply.body.balance).sort()).toContain('12.12');
    expect(await balanceOf('dep-many')).toBe('12.12');
  });

  it('413 payload_too_large for a body over 16 KiB', async () => {
    const before = await settledMoney();
    const reply = await h.call('POST', '/v1/wallet/deposits', {
      user: 'admin1',
      admin: true,
      body: { userId: 'dep-big', amount: '1.00', padding: 'x'.repeat(17 * 1024) },
      headers: { 'idempotency-key': newKey() },
    });
    expectError(reply, 413, 'payload_too_large');
    expect(await balanceOf('dep-big')).toBe('0.00');
    expect(await settledMoney()).toEqual(before);
  });
});

describe('GET /v1/wallet', () => {
  it('a fresh user has balance and pending "0.00"', async () => {
    const reply = await h.call('GET', '/v1/wallet', { user: 'wal-fresh' });
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({ userId: 'wal-fresh', balance: '0.00', pending: '0.00' });
  });

  it('shows a claim as pending until the ledger credits it, never in both fields', async () => {
    expect((await depositAs('admin1', 'wal-sender', '50.00')).status).toBe(201);
    const sent = await h.call('POST', '/v1/packets', {
      user: 'wal-sender',
      body: { type: 'group_fixed', targetId: 'wal-g', count: 2, amount: '3.21' },
      headers: { 'idempotency-key': newKey() },
    });
    expect(sent.status).toBe(201);
    const sender = await h.call('GET', '/v1/wallet', { user: 'wal-sender' });
    expect(sender.body).toEqual({ userId: 'wal-sender', balance: '43.58', pending: '0.00' });

    const opened = await h.call('POST', `/v1/packets/${sent.body.packet.id}/open`, { user: 'wal-opener' });
    expect(opened.body).toMatchObject({ state: 'claimed', amount: '3.21', seq: 1 });
    const right = await h.call('GET', '/v1/wallet', { user: 'wal-opener' });
    expect(right.status).toBe(200);
    // Right after the open the claim is either still pending or already in the balance; never both.
    expect([
      { balance: '0.00', pending: '3.21' },
      { balance: '3.21', pending: '0.00' },
      { balance: '0.00', pending: '0.00' }, // credited between the two reads: shows in neither for a moment
    ]).toContainEqual({ balance: right.body.balance, pending: right.body.pending });

    await h.settle();
    const after = await h.call('GET', '/v1/wallet', { user: 'wal-opener' });
    expect(after.body).toEqual({ userId: 'wal-opener', balance: '3.21', pending: '0.00' });
    await expectConserved();
  });

  it('pending is positive while the ledger consumer is held back, then moves into the balance', async () => {
    expect((await depositAs('admin1', 'wal-sender2', '10.00')).status).toBe(201);
    const sent = await h.call('POST', '/v1/packets', {
      user: 'wal-sender2',
      body: { type: 'personal', targetId: 'wal-opener2', count: 1, amount: '1.23' },
      headers: { 'idempotency-key': newKey() },
    });
    expect(sent.status).toBe(201);
    await h.settle();
    await h.hongbao.consumer.stop();
    try {
      const opened = await h.call('POST', `/v1/packets/${sent.body.packet.id}/open`, { user: 'wal-opener2' });
      expect(opened.body).toEqual({ state: 'claimed', amount: '1.23', seq: 1 });
      const during = await h.call('GET', '/v1/wallet', { user: 'wal-opener2' });
      expect(during.body).toEqual({ userId: 'wal-opener2', balance: '0.00', pending: '1.23' });
    } finally {
      await h.hongbao.consumer.start();
    }
    await h.settle();
    const after = await h.call('GET', '/v1/wallet', { user: 'wal-opener2' });
    expect(after.body).toEqual({ userId: 'wal-opener2', balance: '1.23', pending: '0.00' });
    await expectConserved();
  });
});
