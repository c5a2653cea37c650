// Proves expiry over HTTP: after the deadline open/grab answer expired, expireDue refunds exactly the remainder once, and the page shows rule 9's texts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock, startHarness, type Harness } from '../support/harness.js';
import { apiClient, fen, yuan } from '../support/http-client.js';


const TTL_MS = 60_000;
let h: Harness;
const { fund, sendOk, open, grab, page, balance, expectConserved } = apiClient(() => h, 'expiry');
const clock = new ManualClock(Date.UTC(2026, 1, 17, 4, 0, 0));

beforeAll(async () => {
  h = await startHarness({ clock, packetTtlMs: TTL_MS });
});
afterAll(async () => {
  await h?.stop();
});








async function sentItem(user: string, id: string): Promise<any> {
  await h.settle();
  const reply = await h.call('GET', '/v1/me/sent', { user });
  expect(reply.status).toBe(200);
  return reply.body.items.find((item: any) => item.id === id);
}

describe('expiry', () => {
  it('group_fixed: expireDue closes it, refunds exactly the remainder once; open/grab say expired; rule 9 texts', async () => {
    await fund('ex-s', '10.00');
    const packet = await sendOk('ex-s', { type: 'group_fixed', targetId: 'ex-g', count: 3, amount: '1.50' });
    expect(Date.parse(packet.expiresAt) - Date.parse(packet.createdAt)).toBe(TTL_MS);
    expect((await open(packet.id, 'ex-1')).body).toEqual({ state: 'claimed', amount: '1.50', seq: 1 });

    // One millisecond before the deadline it is still live, and expireDue does nothing.
    clock.advance(TTL_MS - 1 - (clock.now() - Date.parse(packet.createdAt)));
    await h.hongbao.service.expireDue();
    expect((await grab(packet.id, 'ex-2')).body).toEqual({ state: 'openable' });
    expect((await page(packet.id, 'ex-s')).packet.status).toBe('live');
    expect(await balance('ex-s')).toBe('5.50');

    // At the deadline.
    clock.advance(1);
    expect((await grab(packet.id, 'ex-2')).body).toEqual({ state: 'expired' });
    expect((await grab(packet.id, 'ex-1')).body).toEqual({ state: 'claimed', amount: '1.50' });
    await h.hongbao.service.expireDue();
    await h.hongbao.service.expireDue();
    await h.settle();
    await h.hongbao.service.expireDue();
    expect(await balance('ex-s')).toBe('8.50'); // 10.00 − 4.50 + the 3.00 nobody took
    expect((await open(packet.id, 'ex-2')).body).toEqual({ state: 'expired' });
    expect((await grab(packet.id, 'ex-2')).body).toEqual({ state: 'expired' });
    expect((await open(packet.id, 'ex-1')).body).toEqual({ state: 'already_claimed', amount: '1.50', seq: 1 });
    expect((await grab(packet.id, 'ex-1')).body).toEqual({ state: 'claimed', amount: '1.50' });
    expect((await grab(packet.id, 'ex-x')).body).toEqual({ state: 'expired' });

    const own = await page(packet.id, 'ex-s');
    expect(own.summary).toBe('该红包已过期,已领取1/3个,共1.50/4.50元');
    expect(own.packet).toMatchObject({ status: 'expired', total: '4.50', claimedCount: 1, claimedAmount: '1.50' });
    expect(own.actions).toEqual([]);
    expect(own.claims.map((claim: any) => claim.userId)).toEqual(['ex-1']);

    const opener = await page(packet.id, 'ex-1');
    expect(opener.summary).toBe('该红包已过期');
    expect('total' in opener.packet).toBe(false);
    expect('claimedAmount' in opener.packet).toBe(false);
    expect(opener.packet.status).toBe('expired');
    expect(opener.myAmount).toBe('1.50');
    expect(opener.actions).toEqual(['view_my_records']);

    const other = await page(packet.id, 'ex-2');
    expect(other.summary).toBe('该红包已过期');
    expect('total' in other.packet).toBe(false);
    expect('myAmount' in other).toBe(false);

    expect(await sentItem('ex-s', packet.id)).toMatchObject({ status: 'expired', claimedCount: 1, claimedAmount: '1.50', total: '4.50' });
    expect(await balance('ex-1')).toBe('1.50');
    expect(await balance('ex-2')).toBe('0.00');

    // Later passes never refund again.
    clock.advance(TTL_MS);
    await h.hongbao.service.expireDue();
    expect(await balance('ex-s')).toBe('8.50');
    await expectConserved();
  });

  it('an open after the deadline expires the packet itself; later expireDue passes refund nothing more', async () => {
    await fund('ex2-s', '10.00');
    const packet = await sendOk('ex2-s', { type: 'group_lucky', targetId: 'ex2-g', count: 4, amount: '4.00' });
    const first = await open(packet.id, 'ex2-1');
    const second = await open(packet.id, 'ex2-2');
    const claimed = fen(first.body.amount) + fen(second.body.amount);
    clock.advance(TTL_MS);
    expect((await open(packet.id, 'ex2-3')).body).toEqual({ state: 'expired' });
    await h.hongbao.service.expireDue();
    await h.hongbao.service.expireDue();
    expect(await balance('ex2-s')).toBe(yuan(1000 - 400 + (400 - claimed)));
    const own = await page(packet.id, 'ex2-s');
    expect(own.summary).toBe(`该红包已过期,已领取2/4个,共${yuan(claimed)}/4.00元`);
    expect(own.claims).toHaveLength(2); // lucky: the list stays
    const opener = await page(packet.id, 'ex2-2');
    expect(opener.summary).toBe('该红包已过期');
    expect(opener.claims).toHaveLength(2);
    expect(opener.claims.every((claim: any) => claim.best === false)).toBe(true); // best only on a finished lucky packet
    expect('total' in opener.packet).toBe(false);
    await expectConserved();
  });

  it('opens racing the expiry pass at the deadline: refund once, and every paid open is in the book', async () => {
    await fund('ex3-s', '50.00');
    const packet = await sendOk('ex3-s', { type: 'group_lucky', targetId: 'ex3-g', count: 20, amount: '20.00' });
    clock.advance(TTL_MS);
    const replies = await Promise.all([
      ...Array.from({ length: 10 }, (_, index) => open(packet.id, `ex3-${index}`)),
      h.hongbao.service.expireDue().then(() => ({ status: 200, body: { state: 'pass' } })),
      h.hongbao.service.expireDue().then(() => ({ status: 200, body: { state: 'pass' } })),
    ]);
    for (const reply of replies) expect(['expired', 'pass']).toContain(reply.body.state);
    expect(await balance('ex3-s')).toBe('50.00');
    expect((await page(packet.id, 'ex3-s')).summary).toBe('该红包已过期,已领取0/20个,共0.00/20.00元');
    await expectConserved();
  });

  it('a packet with no claims is refunded in full; a personal one reads rule 9 to sender and target', async () => {
    await fund('ex4-s', '10.00');
    const packet = await sendOk('ex4-s', { type: 'personal', targetId: 'ex4-t', count: 1, amount: '8.88' });
    expect(await balance('ex4-s')).toBe('1.12');
    clock.advance(TTL_MS);
    await h.hongbao.service.expireDue();
    expect(await balance('ex4-s')).toBe('10.00');
    expect((await open(packet.id, 'ex4-t')).body).toEqual({ state: 'expired' });
    expect((await grab(packet.id, 'ex4-t')).body).toEqual({ state: 'expired' });
    // Eligibility comes first: a third user is still not eligible.
    expect((await open(packet.id, 'ex4-x')).body).toEqual({ state: 'not_eligible' });
    expect((await page(packet.id, 'ex4-s')).summary).toBe('该红包已过期,已领取0/1个,共0.00/8.88元');
    expect((await page(packet.id, 'ex4-t')).summary).toBe('该红包已过期');
    expect((await h.call('GET', `/v1/packets/${packet.id}`, { user: 'ex4-x' })).status).toBe(403);
    await h.hongbao.service.expireDue();
    expect(await balance('ex4-s')).toBe('10.00');
    await expectConserved();
  });

  it('a finished packet never expires and refunds nothing', async () => {
    await fund('ex5-s', '10.00');
    const packet = await sendOk('ex5-s', { type: 'group_fixed', targetId: 'ex5-g', count: 2, amount: '1.00' });
    await open(packet.id, 'ex5-1');
    await open(packet.id, 'ex5-2');
    clock.advance(TTL_MS);
    await h.hongbao.service.expireDue();
    expect(await balance('ex5-s')).toBe('8.00');
    const own = await page(packet.id, 'ex5-s');
    expect(own.packet.status).toBe('finished');
    expect(own.summary).toBe('2个红包共2.00元');
    expect((await open(packet.id, 'ex5-3')).body).toEqual({ state: 'sold_out' });
    expect((await grab(packet.id, 'ex5-3')).body).toEqual({ state: 'sold_out' });
    await expectConserved();
  });

  it('expiry of a packet whose actor was evicted: rebuilt from storage, refunded once', async () => {
    await fund('ex6-s', '10.00');
    const packet = await sendOk('ex6-s', { type: 'group_fixed', targetId: 'ex6-g', count: 4, amount: '0.50' });
    await open(packet.id, 'ex6-1');
    await h.settle();
    h.hongbao.engine.evictIdle(0);
    clock.advance(TTL_MS);
    await h.hongbao.service.expireDue();
    await h.settle();
    h.hongbao.engine.evictIdle(0);
    await h.hongbao.service.expireDue();
    expect(await balance('ex6-s')).toBe('9.50');
    expect((await open(packet.id, 'ex6-2')).body).toEqual({ state: 'expired' });
    expect((await open(packet.id, 'ex6-1')).body).toEqual({ state: 'already_claimed', amount: '0.50', seq: 1 });
    expect((await page(packet.id, 'ex6-s')).summary).toBe('该红包已过期,已领取1/4个,共0.50/2.00元');
    await expectConserved();
  });
});
