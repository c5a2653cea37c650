// Proves one user cannot stall everyone: every authenticated route but open shares a per-user
// request bucket (429 rate_limited with Retry-After; open keeps its own), a user's requests in
// progress at once are bounded (429 at once, nothing queued), and a packet id that fails its tag
// check is 404 without any lookup, while an id of the old untagged format is still looked up.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REFUSAL_HOLD_MS } from '../../src/http/app.js';
import { startHarness, type Harness } from '../support/harness.js';
import { apiClient, expectError } from '../support/http-client.js';

/** Counts the packet loads from storage (the activations) of a harness. */
function countLoads(harness: Harness): { count: number } {
  const loads = { count: 0 };
  const ledger = harness.hongbao.ledger;
  const load = ledger.load.bind(ledger);
  ledger.load = (packetId: string) => {
    loads.count += 1;
    return load(packetId);
  };
  return loads;
}

describe('the per-user request bucket (every authenticated route but open)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ requestRate: { burst: 4, perSecond: 0.001 } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('429 rate_limited with Retry-After past the burst, on every route; open keeps its own bucket; other users are unaffected', async () => {
    // Names of this run only: on the services run the buckets live in Redis and outlive the test.
    const run = `bucket${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`;
    const [userA, userB] = [`${run}-a`, `${run}-b`];
    const client = apiClient(() => h, run);
    await client.fund(userA, '10.00'); // the admin's request 1
    const packet = await client.sendOk(userA, { type: 'group_lucky', targetId: 'g', count: 3, amount: '3.00' }); // userA: 1
    expect((await client.grab(packet.id, userA)).status).toBe(200); // 2
    expect((await h.call('GET', '/v1/wallet', { user: userA })).status).toBe(200); // 3
    expect((await h.call('GET', '/v1/me/sent', { user: userA })).status).toBe(200); // 4: the bucket is empty now
    const token = await h.token(userA);
    const startedMs = performance.now();
    const response = await h.app.request('/v1/wallet', { headers: { authorization: `Bearer ${token}` } });
    expect(response.status).toBe(429);
    expect(Number(response.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // Held before it is sent (a tarpit): a client in a loop sends one request per hold.
    expect(performance.now() - startedMs).toBeGreaterThanOrEqual(REFUSAL_HOLD_MS - 5);
    expectError({ status: response.status, body: await response.json() }, 429, 'rate_limited');
    expectError(await client.grab(packet.id, userA), 429, 'rate_limited');
    expectError(await h.call('GET', `/v1/packets/${packet.id}`, { user: userA }), 429, 'rate_limited');
    expectError(await h.call('GET', '/v1/packets/p_AAAAAAAAAAAAAAAA', { user: userA }), 429, 'rate_limited');
    expectError(await h.call('GET', '/v1/me/received', { user: userA }), 429, 'rate_limited');
    expectError(
      await h.call('POST', '/v1/packets', {
        user: userA,
        body: { type: 'group_lucky', targetId: 'g', count: 1, amount: '1.00' },
        headers: { 'idempotency-key': `${run}-late` },
      }),
      429,
      'rate_limited',
    );
    // Open has its own bucket: the sender may still open their own group packet.
    expect((await client.open(packet.id, userA)).body.state).toBe('claimed');
    // Someone else's bucket is full.
    expect((await h.call('GET', `/v1/packets/${packet.id}`, { user: userB })).status).toBe(200);
    expect((await h.call('GET', '/v1/wallet', { user: userB })).status).toBe(200);
  });
});

describe('the bound on one user’s requests in progress at once', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ requestsInFlightMax: 2 });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('past it 429 without running (nothing queued), others unaffected, and freed as requests finish', async () => {
    await h.token('flood');
    await h.token('calm');
    const flood = Array.from({ length: 10 }, () => h.call('GET', '/v1/wallet', { user: 'flood' }));
    const calm = h.call('GET', '/v1/wallet', { user: 'calm' });
    const replies = await Promise.all(flood);
    expect(replies.filter((reply) => reply.status === 200)).toHaveLength(2);
    const refused = replies.filter((reply) => reply.status !== 200);
    expect(refused).toHaveLength(8);
    for (const reply of refused) expectError(reply, 429, 'rate_limited');
    expect((await calm).status).toBe(200);
    // Opens count too: they are requests in progress like any other.
    const client = apiClient(() => h, 'inflight');
    await client.fund('inflight-s', '10.00');
    const packet = await client.sendOk('inflight-s', { type: 'group_lucky', targetId: 'g', count: 5, amount: '5.00' });
    const opens = await Promise.all(Array.from({ length: 6 }, () => client.open(packet.id, 'flood')));
    expect(opens.filter((reply) => reply.status === 429)).toHaveLength(4);
    expect(opens.filter((reply) => reply.status === 200).map((reply) => reply.body.state).sort()).toEqual(['already_claimed', 'claimed']);
    // Nothing stays counted: the next request is admitted.
    expect((await h.call('GET', '/v1/wallet', { user: 'flood' })).status).toBe(200);
    await client.expectConserved();
  });
});

describe('packet ids that cannot exist', () => {
  let h: Harness;
  let loads: { count: number };
  beforeAll(async () => {
    h = await startHarness();
    loads = countLoads(h);
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('a new id carries a tag; an id failing its check is 404 on grab, open and the page without any load', async () => {
    const client = apiClient(() => h, 'ids');
    await client.fund('ids-s', '10.00');
    const packet = await client.sendOk('ids-s', { type: 'group_lucky', targetId: 'g', count: 2, amount: '2.00' });
    expect(packet.id).toMatch(/^p_[A-Za-z0-9_-]{32}$/);
    h.hongbao.engine.evictIdle(0); // so a lookup of the real packet would be a load
    const body = packet.id.slice(2);
    const flip = (text: string, at: number) => text.slice(0, at) + (text[at] === 'A' ? 'B' : 'A') + text.slice(at + 1);
    const forged = [
      `p_${flip(body, 3)}`, // another random part: its tag no longer matches
      `p_${flip(body, 30)}`, // a tampered tag
      `p_${'x'.repeat(32)}`,
      'p_doesnotexist',
      'p_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
      'not-a-packet',
    ];
    for (const id of forged) {
      expectError(await client.grab(id, 'ids-u'), 404, 'not_found');
      expectError(await client.open(id, 'ids-u'), 404, 'not_found');
      expectError(await h.call('GET', `/v1/packets/${id}`, { user: 'ids-u' }), 404, 'not_found');
    }
    expect(loads.count).toBe(0);
    // The real one is found (one load, then from memory).
    expect((await client.grab(packet.id, 'ids-u')).body).toEqual({ state: 'openable' });
    expect(loads.count).toBe(1);
  });

  it('an id of the old untagged format (p_ + 16 characters) may be stored: it is still looked up', async () => {
    const before = loads.count;
    expectError(await h.call('GET', '/v1/packets/p_AbCdEfGhIjKlMnOp', { user: 'ids-u' }), 404, 'not_found');
    expect(loads.count).toBe(before + 1);
  });
});
