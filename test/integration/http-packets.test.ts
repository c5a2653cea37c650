// Proves POST /v1/packets (types, limits, 402, Idempotency-Key, 413), grab and open (every state, races, 404s, 429) over HTTP, with money conserved.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenBucketLimiter } from '../../src/engine/rate-limit.js';
import { startHarness, type Harness } from '../support/harness.js';
import { apiClient, expectError, fen, type Reply } from '../support/http-client.js';

let h: Harness;
let keySeq = 0;
const newKey = () => `packets-key-${++keySeq}`;
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

async function fund(harness: Harness, userId: string, amount: string): Promise<void> {
  const reply = await harness.call('POST', '/v1/wallet/deposits', {
    user: 'packets-admin',
    admin: true,
    body: { userId, amount },
    headers: { 'idempotency-key': newKey() },
  });
  expect(reply.status).toBe(201);
}

function send(harness: Harness, user: string, body: unknown, key: string | null = newKey()): Promise<Reply> {
  return harness.call('POST', '/v1/packets', { user, body, ...(key !== null ? { headers: { 'idempotency-key': key } } : {}) });
}

async function sendOk(harness: Harness, user: string, body: Record<string, unknown>): Promise<any> {
  const reply = await send(harness, user, body);
  expect(reply.status, JSON.stringify(reply.body)).toBe(201);
  return reply.body.packet;
}

const open = (harness: Harness, id: string, user: string) => harness.call('POST', `/v1/packets/${id}/open`, { user });
const grab = (harness: Harness, id: string, user: string) => harness.call('POST', `/v1/packets/${id}/grab`, { user });

async function balance(harness: Harness, user: string): Promise<string> {
  const reply = await harness.call('GET', '/v1/wallet', { user });
  expect(reply.status).toBe(200);
  return reply.body.balance;
}

/** Σ balances = 0, wallets + escrow = deposits, reconciliation clean — on whichever harness. */
const expectConserved = (harness: Harness) => apiClient(() => harness, 'packets').expectConserved();

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

describe('POST /v1/packets', () => {
  it('sends each type, debits at once and answers 201 {packet}', async () => {
    await fund(h, 'send-a', '1000.00');
    const personal = await send(h, 'send-a', { type: 'personal', targetId: 'send-b', count: 1, amount: '8.88' });
    expect(personal.status).toBe(201);
    expect(Object.keys(personal.body)).toEqual(['packet']);
    const p = personal.body.packet;
    expect(p).toMatchObject({
      type: 'personal',
      senderId: 'send-a',
      targetId: 'send-b',
      count: 1,
      total: '8.88',
      greeting: '恭喜发财,大吉大利',
      status: 'live',
      claimedCount: 0,
      claimedAmount: '0.00',
    });
    expect(typeof p.id).toBe('string');
    expect(p.createdAt).toMatch(ISO);
    expect(p.expiresAt).toMatch(ISO);
    expect(Date.parse(p.expiresAt) - Date.parse(p.createdAt)).toBe(86_400_000);
    expect(await balance(h, 'send-a')).toBe('991.12');

    const fixed = await sendOk(h, 'send-a', { type: 'group_fixed', targetId: 'g1', count: 5, amount: '2.00', greeting: '新年快乐' });
    expect(fixed).toMatchObject({ type: 'group_fixed', targetId: 'g1', count: 5, total: '10.00', greeting: '新年快乐', status: 'live' });
    expect(await balance(h, 'send-a')).toBe('981.12');

    const lucky = await sendOk(h, 'send-a', { type: 'group_lucky', targetId: 'g1', count: 10, amount: '20.00', members: ['send-b', 'send-c'] });
    expect(lucky).toMatchObject({ type: 'group_lucky', count: 10, total: '20.00', members: ['send-b', 'send-c'] });
    expect(await balance(h, 'send-a')).toBe('961.12');

    // Limits at their edges are accepted: 100 shares, 200.00 per share, 100-char greeting.
    const edge = await sendOk(h, 'send-a', { type: 'group_fixed', targetId: 'g1', count: 1, amount: '200.00', greeting: '福'.repeat(100) });
    expect(edge.total).toBe('200.00');
    // 100 characters are counted as characters, not UTF-16 units: 100 emoji fit.
    const emoji = await sendOk(h, 'send-a', { type: 'group_fixed', targetId: 'g1', count: 1, amount: '0.01', greeting: '🧧'.repeat(100) });
    expect(emoji.greeting).toBe('🧧'.repeat(100));
    const many = await sendOk(h, 'send-a', { type: 'group_lucky', targetId: 'g1', count: 100, amount: '1.00' });
    expect(many.total).toBe('1.00');
    expect(await balance(h, 'send-a')).toBe('760.11');
    const ids = new Set([p.id, fixed.id, lucky.id, edge.id, emoji.id, many.id]);
    expect(ids.size).toBe(6);
    await expectConserved(h);
  });

  it('402 insufficient_balance changes nothing: balance unchanged and no packet in /v1/me/sent', async () => {
    await fund(h, 'poor', '5.00');
    const before = await settledMoney();
    const key = newKey();
    const short = await send(h, 'poor', { type: 'group_fixed', targetId: 'g2', count: 3, amount: '2.00' }, key);
    expectError(short, 402, 'insufficient_balance');
    // Retrying with the same key while still short answers 402 again and still changes nothing.
    expectError(await send(h, 'poor', { type: 'group_fixed', targetId: 'g2', count: 3, amount: '2.00' }, key), 402, 'insufficient_balance');
    expectError(await send(h, 'never-funded', { type: 'personal', targetId: 'poor', count: 1, amount: '0.01' }), 402, 'insufficient_balance');
    expect(await balance(h, 'poor')).toBe('5.00');
    expect(await settledMoney()).toEqual(before);
    const sent = await h.call('GET', '/v1/me/sent', { user: 'poor' });
    expect(sent.body.count).toBe(0);
    expect(sent.body.items).toEqual([]);
    // Exactly the balance is enough.
    const exact = await sendOk(h, 'poor', { type: 'group_lucky', targetId: 'g2', count: 3, amount: '5.00' });
    expect(exact.total).toBe('5.00');
    expect(await balance(h, 'poor')).toBe('0.00');
    await expectConserved(h);
  });

  describe('limits → 400 invalid_request with a clear message, and nothing changes', () => {
    const base = { type: 'group_fixed', targetId: 'g3', count: 2, amount: '1.00' };
    const cases: [string, unknown, RegExp][] = [
      ['count 0', { ...base, count: 0 }, /count/],
      ['count 101', { ...base, count: 101 }, /count must be at most 100/],
      ['count -1', { ...base, count: -1 }, /count/],
      ['count 1.5', { ...base, count: 1.5 }, /count/],
      ['count as string "10"', { ...base, count: '10' }, /count/],
      ['personal count 2', { type: 'personal', targetId: 'lim-b', count: 2, amount: '1.00' }, /personal packet has exactly 1 share/],
      ['share > 200.00 (fixed)', { ...base, amount: '200.01' }, /each share must be between 0\.01 and 200\.00/],
      ['share > 200.00 (personal)', { type: 'personal', targetId: 'lim-b', count: 1, amount: '201.00' }, /each share must be between/],
      ['lucky total > count × 200', { type: 'group_lucky', targetId: 'g3', count: 2, amount: '400.01' }, /amount must be at most 400\.00 for 2 shares/],
      ['lucky total < count × 0.01', { type: 'group_lucky', targetId: 'g3', count: 10, amount: '0.09' }, /amount must be at least 0\.10 for 10 shares/],
      ['amount 0', { ...base, amount: '0' }, /each share must be between/],
      ['amount as number', { ...base, amount: 1 }, /amount/],
      ['amount "1e2"', { ...base, amount: '1e2' }, /amount/],
      ['amount "0.001"', { ...base, amount: '0.001' }, /amount/],
      ['amount "-1"', { ...base, amount: '-1' }, /amount/],
      ['amount " 1"', { ...base, amount: ' 1' }, /amount/],
      ['amount "NaN"', { ...base, amount: 'NaN' }, /amount/],
      ['greeting of 101 characters', { ...base, greeting: 'x'.repeat(101) }, /greeting must be at most 100 characters/],
      ['greeting of 101 Chinese characters', { ...base, greeting: '福'.repeat(101) }, /greeting must be at most 100 characters/],
      ['greeting as number', { ...base, greeting: 5 }, /greeting/],
      ['greeting with a NUL character', { ...base, greeting: 'a\u0000b' }, /greeting/],
      ['greeting with a lone surrogate', { ...base, greeting: 'a\uD800b' }, /greeting/],
      ['greeting of 101 emoji', { ...base, greeting: '🧧'.repeat(101) }, /greeting must be at most 100 characters/],
      ['personal to self', { type: 'personal', targetId: 'lim-a', count: 1, amount: '1.00' }, /cannot send a personal packet to yourself/],
      ['members on personal', { type: 'personal', targetId: 'lim-b', count: 1, amount: '1.00', members: ['lim-b'] }, /members is only for group packets/],
      ['empty members', { ...base, members: [] }, /members/],
      ['repeated members', { ...base, members: ['u1', 'u1'] }, /members must not repeat/],
      ['bad member id', { ...base, members: ['not ok'] }, /members/],
      ['members not an array', { ...base, members: 'u1' }, /members/],
      ['unknown type', { ...base, type: 'group_random' }, /type/],
      ['missing type', { targetId: 'g3', count: 2, amount: '1.00' }, /type/],
      ['missing targetId', { type: 'group_fixed', count: 2, amount: '1.00' }, /targetId/],
      ['missing count', { type: 'group_fixed', targetId: 'g3', amount: '1.00' }, /count/],
      ['missing amount', { type: 'group_fixed', targetId: 'g3', count: 2 }, /amount/],
      ['bad targetId', { ...base, targetId: '../etc' }, /targetId/],
      ['empty object', {}, /type/],
    ];
    it.each(cases)('%s', async (_label, body, message) => {
      await fund(h, 'lim-a', '1000.00');
      const before = await settledMoney();
      const reply = await send(h, 'lim-a', body);
      expectError(reply, 400, 'invalid_request');
      expect(reply.body.error.message).toMatch(message);
      expect(await settledMoney()).toEqual(before);
      const sent = await h.call('GET', '/v1/me/sent', { user: 'lim-a' });
      expect(sent.body.count).toBe(0);
    });

    it('a body with several problems lists them all in details', async () => {
      const reply = await send(h, 'lim-a', {});
      expectError(reply, 400, 'invalid_request');
      const paths = (reply.body.error.details as { path: string }[]).map((detail) => detail.path).sort();
      expect(paths).toEqual(['amount', 'count', 'targetId', 'type']);
    });

    it.each([
      ['malformed JSON', '{"type": "group_fixed", ', 'application/json'],
      ['a JSON array', '[1,2]', 'application/json'],
      ['JSON null', 'null', 'application/json'],
      ['a JSON string', '"hello"', 'application/json'],
      ['an empty body', '', 'application/json'],
      ['plain text', 'send me money', 'text/plain'],
      ['a form', 'type=group_fixed&targetId=g3&count=2&amount=1.00', 'application/x-www-form-urlencoded'],
      ['JSON sent as text/plain', JSON.stringify(base), 'text/plain'],
    ])('%s → 400', async (_label, body, contentType) => {
      const before = await settledMoney();
      const response = await h.app.request('/v1/packets', {
        method: 'POST',
        headers: { authorization: `Bearer ${await h.token('lim-a')}`, 'content-type': contentType, 'idempotency-key': newKey() },
        body,
      });
      const reply = { status: response.status, body: await response.json() };
      expectError(reply, 400, 'invalid_request');
      expect(await settledMoney()).toEqual(before);
    });

    it('400 when the Idempotency-Key is missing, and nothing changes', async () => {
      const before = await settledMoney();
      const reply = await send(h, 'lim-a', base, null);
      expectError(reply, 400, 'invalid_request');
      expect(reply.body.error.message).toMatch(/Idempotency-Key/);
      expectError(await send(h, 'lim-a', base, 'k'.repeat(101)), 400, 'invalid_request');
      expect(await settledMoney()).toEqual(before);
    });

    it('413 payload_too_large for a body over 16 KiB, and nothing changes', async () => {
      const before = await settledMoney();
      const reply = await send(h, 'lim-a', { ...base, greeting: 'x'.repeat(16 * 1024 + 1) });
      expectError(reply, 413, 'payload_too_large');
      const members = Array.from({ length: 3000 }, (_, index) => `member-${index}`);
      expectError(await send(h, 'lim-a', { ...base, members }), 413, 'payload_too_large');
      expect(await settledMoney()).toEqual(before);
    });
  });

  it('Idempotency-Key: same key + same body returns the same packet and debits once; another body → 409', async () => {
    await fund(h, 'idem-a', '100.00');
    const key = newKey();
    const body = { type: 'group_lucky', targetId: 'g4', count: 4, amount: '10.00', greeting: 'hi' };
    const first = await send(h, 'idem-a', body, key);
    expect(first.status).toBe(201);
    // A claim in between: the replay is the first response, unchanged.
    expect((await open(h, first.body.packet.id, 'idem-b')).body.state).toBe('claimed');
    const again = await send(h, 'idem-a', body, key);
    expect(again.status).toBe(201);
    expect(again.body).toEqual(first.body);
    // Key order in the JSON does not matter: it is the same request.
    const reordered = await send(h, 'idem-a', { greeting: 'hi', amount: '10.00', count: 4, targetId: 'g4', type: 'group_lucky' }, key);
    expect(reordered.status).toBe(201);
    expect(reordered.body.packet.id).toBe(first.body.packet.id);
    expect(await balance(h, 'idem-a')).toBe('90.00');

    const before = await settledMoney();
    expectError(await send(h, 'idem-a', { ...body, amount: '10.01' }, key), 409, 'idempotency_conflict');
    expectError(await send(h, 'idem-a', { ...body, greeting: 'other' }, key), 409, 'idempotency_conflict');
    expectError(await send(h, 'idem-a', { ...body, type: 'group_fixed' }, key), 409, 'idempotency_conflict');
    expect(await settledMoney()).toEqual(before);
    expect(await balance(h, 'idem-a')).toBe('90.00');
    const sent = await h.call('GET', '/v1/me/sent', { user: 'idem-a' });
    expect(sent.body.count).toBe(1);
    // Keys belong to their user: another sender may use the same key.
    await fund(h, 'idem-c', '10.00');
    const other = await send(h, 'idem-c', body, key);
    expect(other.status).toBe(201);
    expect(other.body.packet.id).not.toBe(first.body.packet.id);
    await expectConserved(h);
  });

  it('Idempotency-Key: the same send racing itself creates one packet and debits once (even with funds for only one)', async () => {
    await fund(h, 'idem-race', '10.00');
    const key = newKey();
    const body = { type: 'group_fixed', targetId: 'g5', count: 2, amount: '5.00' };
    const replies = await Promise.all(Array.from({ length: 6 }, () => send(h, 'idem-race', body, key)));
    for (const reply of replies) expect(reply.status, JSON.stringify(reply.body)).toBe(201);
    expect(new Set(replies.map((reply) => reply.body.packet.id)).size).toBe(1);
    expect(await balance(h, 'idem-race')).toBe('0.00');
    const sent = await h.call('GET', '/v1/me/sent', { user: 'idem-race' });
    expect(sent.body.count).toBe(1);
    await expectConserved(h);
  });
});

describe('sends racing on one wallet', () => {
  it('two different sends with funds for one: exactly one 201, one 402, never a negative balance', async () => {
    for (let round = 0; round < 5; round += 1) {
      const user = `wallet-race-${round}`;
      await fund(h, user, '10.00');
      const replies = await Promise.all([
        send(h, user, { type: 'group_fixed', targetId: 'g-race', count: 2, amount: '5.00' }),
        send(h, user, { type: 'group_lucky', targetId: 'g-race', count: 3, amount: '10.00' }),
        send(h, user, { type: 'personal', targetId: 'someone', count: 1, amount: '6.00' }),
      ]);
      expect(replies.filter((reply) => reply.status === 201)).toHaveLength(1);
      for (const reply of replies.filter((reply) => reply.status !== 201)) expectError(reply, 402, 'insufficient_balance');
      expect(await balance(h, user)).toBe(replies[2]!.status === 201 ? '4.00' : '0.00');
    }
    await expectConserved(h);
  });
});

describe('POST /v1/packets/:id/grab', () => {
  it('answers openable / claimed (with amount) / sold_out / not_eligible and never changes state', async () => {
    await fund(h, 'grab-a', '100.00');
    const packet = await sendOk(h, 'grab-a', { type: 'group_fixed', targetId: 'g6', count: 2, amount: '1.50', members: ['grab-a', 'grab-b', 'grab-c', 'grab-d'] });
    for (let i = 0; i < 10; i += 1) {
      expect((await grab(h, packet.id, 'grab-b')).body).toEqual({ state: 'openable' });
      expect((await grab(h, packet.id, 'grab-a')).body).toEqual({ state: 'openable' });
      expect((await grab(h, packet.id, 'grab-x')).body).toEqual({ state: 'not_eligible' });
    }
    await h.settle();
    const page = await h.call('GET', `/v1/packets/${packet.id}`, { user: 'grab-a' });
    expect(page.body.packet).toMatchObject({ status: 'live', claimedCount: 0, claimedAmount: '0.00' });
    expect(await balance(h, 'grab-b')).toBe('0.00');

    expect((await open(h, packet.id, 'grab-b')).body).toEqual({ state: 'claimed', amount: '1.50', seq: 1 });
    const claimedGrab = await grab(h, packet.id, 'grab-b');
    expect(claimedGrab.status).toBe(200);
    expect(claimedGrab.body).toEqual({ state: 'claimed', amount: '1.50' });
    expect((await grab(h, packet.id, 'grab-c')).body).toEqual({ state: 'openable' });
    expect((await open(h, packet.id, 'grab-c')).body).toEqual({ state: 'claimed', amount: '1.50', seq: 2 });
    for (let i = 0; i < 5; i += 1) {
      expect((await grab(h, packet.id, 'grab-d')).body).toEqual({ state: 'sold_out' });
      expect((await grab(h, packet.id, 'grab-b')).body).toEqual({ state: 'claimed', amount: '1.50' });
      expect((await grab(h, packet.id, 'grab-x')).body).toEqual({ state: 'not_eligible' });
    }
    await h.settle();
    const after = await h.call('GET', `/v1/packets/${packet.id}`, { user: 'grab-a' });
    expect(after.body.packet).toMatchObject({ status: 'finished', claimedCount: 2, claimedAmount: '3.00' });
    expect(await balance(h, 'grab-d')).toBe('0.00');
    await expectConserved(h);
  });

  it('personal: only the target may grab', async () => {
    await fund(h, 'grab-p', '10.00');
    const packet = await sendOk(h, 'grab-p', { type: 'personal', targetId: 'grab-q', count: 1, amount: '2.00' });
    expect((await grab(h, packet.id, 'grab-q')).body).toEqual({ state: 'openable' });
    expect((await grab(h, packet.id, 'grab-p')).body).toEqual({ state: 'not_eligible' });
    expect((await grab(h, packet.id, 'grab-r')).body).toEqual({ state: 'not_eligible' });
  });

  it('404 not_found for an unknown packet or an id we could never issue', async () => {
    expectError(await grab(h, 'p_doesnotexist', 'grab-b'), 404, 'not_found');
    expectError(await grab(h, '..%2Fx', 'grab-b'), 404, 'not_found');
    expectError(await grab(h, 'x'.repeat(65), 'grab-b'), 404, 'not_found');
  });
});

describe('POST /v1/packets/:id/open', () => {
  it('claimed (amount, seq), already_claimed (same amount), sold_out; the sender may open their own group packet', async () => {
    await fund(h, 'open-a', '100.00');
    const packet = await sendOk(h, 'open-a', { type: 'group_lucky', targetId: 'g7', count: 3, amount: '6.00' });
    const first = await open(h, packet.id, 'open-a');
    expect(first.status).toBe(200);
    expect(first.body.state).toBe('claimed');
    expect(first.body.seq).toBe(1);
    expect(fen(first.body.amount)).toBeGreaterThanOrEqual(1);
    const again = await open(h, packet.id, 'open-a');
    expect(again.body).toEqual({ state: 'already_claimed', amount: first.body.amount, seq: 1 });
    const second = await open(h, packet.id, 'open-b');
    expect(second.body).toMatchObject({ state: 'claimed', seq: 2 });
    const third = await open(h, packet.id, 'open-c');
    expect(third.body).toMatchObject({ state: 'claimed', seq: 3 });
    expect(fen(first.body.amount) + fen(second.body.amount) + fen(third.body.amount)).toBe(600);
    expect((await open(h, packet.id, 'open-d')).body).toEqual({ state: 'sold_out' });
    expect((await open(h, packet.id, 'open-d')).body).toEqual({ state: 'sold_out' });
    expect((await open(h, packet.id, 'open-b')).body).toEqual({ state: 'already_claimed', amount: second.body.amount, seq: 2 });
    await h.settle();
    expect(await balance(h, 'open-a')).toBe(((9400 + fen(first.body.amount)) / 100).toFixed(2));
    expect(await balance(h, 'open-b')).toBe(second.body.amount);
    expect(await balance(h, 'open-d')).toBe('0.00');
    await expectConserved(h);
  });

  it('group_fixed shares are equal', async () => {
    await fund(h, 'open-f', '100.00');
    const packet = await sendOk(h, 'open-f', { type: 'group_fixed', targetId: 'g8', count: 3, amount: '0.33' });
    expect(packet.total).toBe('0.99');
    for (const [index, user] of ['open-f1', 'open-f2', 'open-f3'].entries()) {
      expect((await open(h, packet.id, user)).body).toEqual({ state: 'claimed', amount: '0.33', seq: index + 1 });
    }
    expect((await open(h, packet.id, 'open-f4')).body).toEqual({ state: 'sold_out' });
    await expectConserved(h);
  });

  it('not_eligible: a non-target on a personal packet, the sender of a personal packet, a user outside members; the sender may open their own group packet', async () => {
    await fund(h, 'elig-a', '100.00');
    const personal = await sendOk(h, 'elig-a', { type: 'personal', targetId: 'elig-b', count: 1, amount: '5.20' });
    expect((await open(h, personal.id, 'elig-c')).body).toEqual({ state: 'not_eligible' });
    expect((await open(h, personal.id, 'elig-a')).body).toEqual({ state: 'not_eligible' });
    expect((await open(h, personal.id, 'elig-b')).body).toEqual({ state: 'claimed', amount: '5.20', seq: 1 });
    expect((await open(h, personal.id, 'elig-c')).body).toEqual({ state: 'not_eligible' });
    expect((await open(h, personal.id, 'elig-b')).body).toEqual({ state: 'already_claimed', amount: '5.20', seq: 1 });

    const members = await sendOk(h, 'elig-a', { type: 'group_lucky', targetId: 'g9', count: 2, amount: '1.00', members: ['elig-b', 'elig-c'] });
    expect((await open(h, members.id, 'elig-d')).body).toEqual({ state: 'not_eligible' });
    expect((await open(h, members.id, 'elig-c')).body).toMatchObject({ state: 'claimed', seq: 1 });
    // API.md: the sender may open their own group packet, listed in members or not.
    const own = (await open(h, members.id, 'elig-a')).body;
    expect(own).toMatchObject({ state: 'claimed', seq: 2 });
    await h.settle();
    expect(await balance(h, 'elig-d')).toBe('0.00');
    expect(await balance(h, 'elig-c')).toBe(((100 - Math.round(Number(own.amount) * 100)) / 100).toFixed(2));
    expect(await balance(h, 'elig-a')).toBe((94.8 - 1 + Number(own.amount)).toFixed(2));
    await expectConserved(h);
  });

  it('404 not_found for an unknown packet and for weird ids', async () => {
    expectError(await open(h, 'p_doesnotexist', 'open-x'), 404, 'not_found');
    expectError(await open(h, '..%2Fx', 'open-x'), 404, 'not_found');
    expectError(await open(h, '%00', 'open-x'), 404, 'not_found');
    expectError(await open(h, encodeURIComponent("p_x' or 1=1 --"), 'open-x'), 404, 'not_found');
    expectError(await open(h, 'x'.repeat(65), 'open-x'), 404, 'not_found');
    expectError(await h.call('POST', '/v1/packets/../x/open', { user: 'open-x' }), 404, 'not_found');
    expectError(await h.call('GET', '/v1/packets/..%2Fx', { user: 'open-x' }), 404, 'not_found');
    expectError(await h.call('GET', '/v1/packets/p_doesnotexist', { user: 'open-x' }), 404, 'not_found');
  });

  it('RACE: 60 users open a 10-share lucky packet at once → 10 claimed, 50 sold_out, amounts sum to the total, seqs 1..10', async () => {
    await fund(h, 'race-a', '100.00');
    const packet = await sendOk(h, 'race-a', { type: 'group_lucky', targetId: 'g10', count: 10, amount: '20.00' });
    const users = Array.from({ length: 60 }, (_, index) => `race-u${index}`);
    const replies = await Promise.all(users.map((user) => open(h, packet.id, user)));
    for (const reply of replies) expect(reply.status).toBe(200);
    const claimed = replies.filter((reply) => reply.body.state === 'claimed');
    const soldOut = replies.filter((reply) => reply.body.state === 'sold_out');
    expect(claimed).toHaveLength(10);
    expect(soldOut).toHaveLength(50);
    expect(claimed.reduce((sum, reply) => sum + fen(reply.body.amount), 0)).toBe(2000);
    expect(claimed.map((reply) => reply.body.seq).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    for (const reply of claimed) {
      expect(fen(reply.body.amount)).toBeGreaterThanOrEqual(1);
      expect(fen(reply.body.amount)).toBeLessThanOrEqual(20_000);
    }
    await h.settle();
    for (const [index, reply] of replies.entries()) {
      expect(await balance(h, users[index]!)).toBe(reply.body.state === 'claimed' ? reply.body.amount : '0.00');
    }
    const page = await h.call('GET', `/v1/packets/${packet.id}`, { user: 'race-a' });
    expect(page.body.packet).toMatchObject({ status: 'finished', claimedCount: 10, claimedAmount: '20.00' });
    await expectConserved(h);
  });

  it('RACE: one user opening 20 times at once is paid once; the rest are already_claimed with the same amount', async () => {
    await fund(h, 'self-a', '100.00');
    const packet = await sendOk(h, 'self-a', { type: 'group_lucky', targetId: 'g11', count: 5, amount: '10.00' });
    const replies = await Promise.all(Array.from({ length: 20 }, () => open(h, packet.id, 'self-b')));
    const claimed = replies.filter((reply) => reply.body.state === 'claimed');
    expect(claimed).toHaveLength(1);
    const { amount, seq } = claimed[0]!.body;
    expect(seq).toBe(1);
    for (const reply of replies) {
      expect(reply.status).toBe(200);
      if (reply.body.state !== 'claimed') expect(reply.body).toEqual({ state: 'already_claimed', amount, seq });
    }
    await h.settle();
    expect((await h.call('GET', '/v1/wallet', { user: 'self-b' })).body).toEqual({ userId: 'self-b', balance: amount, pending: '0.00' });
    const page = await h.call('GET', `/v1/packets/${packet.id}`, { user: 'self-a' });
    expect(page.body.packet.claimedCount).toBe(1);
    await expectConserved(h);
  });

  it('RACE: several users each racing themselves on a 3-share packet: 3 paid once each, nobody twice', async () => {
    await fund(h, 'mix-a', '100.00');
    const packet = await sendOk(h, 'mix-a', { type: 'group_lucky', targetId: 'g12', count: 3, amount: '3.00' });
    const users = Array.from({ length: 8 }, (_, index) => `mix-u${index}`);
    const replies = await Promise.all(users.flatMap((user) => Array.from({ length: 5 }, () => open(h, packet.id, user).then((reply) => ({ user, reply })))));
    const claimed = replies.filter(({ reply }) => reply.body.state === 'claimed');
    expect(claimed).toHaveLength(3);
    expect(new Set(claimed.map(({ user }) => user)).size).toBe(3);
    for (const { user, reply } of replies) {
      const mine = claimed.find((entry) => entry.user === user);
      if (mine === undefined) expect(reply.body).toEqual({ state: 'sold_out' });
      else if (reply.body.state !== 'claimed') expect(reply.body).toEqual({ state: 'already_claimed', amount: mine.reply.body.amount, seq: mine.reply.body.seq });
    }
    await expectConserved(h);
  });

  it('busy: a crowd past what may wait on one hot packet is shed at once with 200 {state: "busy", retryAfterMs}; the rest get true answers', async () => {
    await fund(h, 'hot-sender', '100.00');
    const packet = await sendOk(h, 'hot-sender', { type: 'group_lucky', targetId: 'hot-g', count: 100, amount: '100.00' });
    const users = Array.from({ length: 1_500 }, (_, index) => `hot-u${index}`);
    await Promise.all(users.map((user) => h.token(user))); // minted before: the opens start in one turn
    // All in one turn of the event loop: the group commit (setImmediate) cannot finish before the last one arrives.
    const replies = await Promise.all(users.map((user) => open(h, packet.id, user)));
    expect(replies.every((reply) => reply.status === 200)).toBe(true);
    const busy = replies.filter((reply) => reply.body.state === 'busy');
    expect(busy.length).toBeGreaterThan(0);
    for (const reply of busy) {
      expect(reply.body).toEqual({ state: 'busy', retryAfterMs: expect.any(Number) });
      expect(reply.body.retryAfterMs).toBeGreaterThan(0);
    }
    const claimed = replies.filter((reply) => reply.body.state === 'claimed');
    expect(claimed).toHaveLength(100);
    expect(claimed.reduce((sum, reply) => sum + fen(reply.body.amount), 0)).toBe(10_000);
    expect(replies.filter((reply) => reply.body.state === 'sold_out').length + busy.length + 100).toBe(users.length);
    // Shed, not lost: retrying after retryAfterMs gets the true answer.
    const shedUser = users[replies.findIndex((reply) => reply.body.state === 'busy')]!;
    await new Promise((resolve) => setTimeout(resolve, busy[0]!.body.retryAfterMs));
    expect((await open(h, packet.id, shedUser)).body).toEqual({ state: 'sold_out' });
    await expectConserved(h);
  });

  it('busy scenario keeps the books: many packets, many opens, then reconcile is clean', async () => {
    const senders = ['busy-s1', 'busy-s2', 'busy-s3'];
    for (const sender of senders) await fund(h, sender, '500.00');
    const packets = await Promise.all(
      senders.flatMap((sender, index) => [
        sendOk(h, sender, { type: 'group_lucky', targetId: `busy-g${index}`, count: 7, amount: '13.57' }),
        sendOk(h, sender, { type: 'group_fixed', targetId: `busy-g${index}`, count: 4, amount: '0.25' }),
        sendOk(h, sender, { type: 'personal', targetId: senders[(index + 1) % 3]!, count: 1, amount: '3.33' }),
      ]),
    );
    const openers = [...senders, ...Array.from({ length: 10 }, (_, index) => `busy-u${index}`)];
    await Promise.all(packets.flatMap((packet) => openers.map((user) => open(h, packet.id, user))));
    await expectConserved(h);
  });
});

describe('rate limiting (429)', () => {
  let limited: Harness;
  beforeAll(async () => {
    limited = await startHarness({ openLimiter: new TokenBucketLimiter(2, 0.001) });
  });
  afterAll(async () => {
    await limited?.stop();
  });

  it('429 rate_limited with Retry-After once a user exhausts the bucket; others are unaffected; grab is not limited', async () => {
    await fund(limited, 'rl-a', '10.00');
    const packet = await sendOk(limited, 'rl-a', { type: 'group_lucky', targetId: 'rl-g', count: 3, amount: '3.00' });
    const first = await open(limited, packet.id, 'rl-b');
    expect(first.body.state).toBe('claimed');
    expect((await open(limited, packet.id, 'rl-b')).body).toEqual({ state: 'already_claimed', amount: first.body.amount, seq: 1 });
    const response = await limited.app.request(`/v1/packets/${packet.id}/open`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await limited.token('rl-b')}` },
    });
    expect(response.status).toBe(429);
    expect(response.headers.get('retry-after')).toBe('1');
    expectError({ status: response.status, body: await response.json() }, 429, 'rate_limited');
    expectError(await open(limited, packet.id, 'rl-b'), 429, 'rate_limited');
    // Limited even on an unknown packet: the limit comes before any lookup.
    expectError(await open(limited, 'p_unknown', 'rl-b'), 429, 'rate_limited');
    expect((await grab(limited, packet.id, 'rl-b')).body).toEqual({ state: 'claimed', amount: first.body.amount });
    expect((await open(limited, packet.id, 'rl-c')).body.state).toBe('claimed');
    await limited.settle();
    expect(await balance(limited, 'rl-b')).toBe(first.body.amount);
    await expectConserved(limited);
  });
});
