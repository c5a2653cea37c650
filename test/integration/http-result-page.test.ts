// Proves GET /v1/packets/:id follows API.md's result-page rules 1–8 for sender, opener, other viewer and stranger (exact summaries, hidden totals, claims newest first, best luck, 403).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock, startHarness, type Harness } from '../support/harness.js';
import { apiClient, fen, yuan, expectError } from '../support/http-client.js';


let h: Harness;
const { fund, sendOk, openOk, page, expectConserved } = apiClient(() => h, 'page');
const clock = new ManualClock(Date.UTC(2026, 1, 17, 4, 0, 0));

beforeAll(async () => {
  h = await startHarness({ clock });
});
afterAll(async () => {
  await h?.stop();
});

const NOTICE = '已存入零钱,可用于发红包';
const PACKET_KEYS = ['id', 'type', 'senderId', 'targetId', 'count', 'greeting', 'status', 'createdAt', 'expiresAt', 'claimedCount'];







/** The packet object carries total/claimedAmount exactly when `revealed`. */
function expectPacketShape(packet: any, revealed: boolean): void {
  for (const key of PACKET_KEYS) expect(packet).toHaveProperty(key);
  expect('total' in packet).toBe(revealed);
  expect('claimedAmount' in packet).toBe(revealed);
}


describe('group_lucky', () => {
  it('live, partly claimed and finished pages for sender, openers and a non-opener; best luck only when finished', async () => {
    await fund('lk-s', '100.00');
    const packet = await sendOk('lk-s', { type: 'group_lucky', targetId: 'lk-g', count: 10, amount: '20.00' });
    const liveAt = Date.parse(packet.createdAt);
    expect(liveAt).toBe(clock.now());

    // Nobody opened yet.
    const own0 = await page(packet.id, 'lk-s');
    expect(own0.summary).toBe('已领取0/10个,共0.00/20.00元');
    expectPacketShape(own0.packet, true);
    expect(own0.packet).toMatchObject({ id: packet.id, status: 'live', total: '20.00', claimedCount: 0, claimedAmount: '0.00' });
    expect(own0.claims).toEqual([]);
    expect(own0.actions).toEqual(['resend']);
    expect('myAmount' in own0).toBe(false);
    expect('notice' in own0).toBe(false);

    const other0 = await page(packet.id, 'lk-x');
    expect(other0.summary).toBe('领取0/10个');
    expectPacketShape(other0.packet, false);
    expect(other0.claims).toEqual([]);
    expect(other0.actions).toEqual([]);
    expect('myAmount' in other0).toBe(false);

    // Three opens, one second apart.
    const opens: { user: string; amount: string; seq: number; atMs: number }[] = [];
    for (let index = 1; index <= 3; index += 1) {
      clock.advance(1000);
      const user = `lk-${index}`;
      opens.push({ user, ...(await openOk(packet.id, user)), atMs: clock.now() });
    }
    const claimed3 = opens.reduce((sum, open) => sum + fen(open.amount), 0);

    const own3 = await page(packet.id, 'lk-s');
    expect(own3.summary).toBe(`已领取3/10个,共${yuan(claimed3)}/20.00元`);
    expect(own3.packet).toMatchObject({ status: 'live', claimedCount: 3, claimedAmount: yuan(claimed3), total: '20.00' });
    expect(own3.actions).toEqual(['resend']);
    expect(own3.claims.map((claim: any) => claim.userId)).toEqual(['lk-3', 'lk-2', 'lk-1']);
    for (const claim of own3.claims) expect(claim.best).toBe(false);

    const opener3 = await page(packet.id, 'lk-2');
    expect(opener3.summary).toBe('领取3/10个');
    expectPacketShape(opener3.packet, false);
    expect(opener3.packet.claimedCount).toBe(3);
    expect(opener3.myAmount).toBe(opens[1]!.amount);
    expect(opener3.notice).toBe(NOTICE);
    expect(opener3.actions).toEqual(['view_my_records']);
    // Rule 7: everyone who may view a lucky packet sees the list, newest first, with times.
    expect(opener3.claims).toEqual(
      [...opens].reverse().map((open) => ({ userId: open.user, amount: open.amount, claimedAt: new Date(open.atMs).toISOString(), best: false, credited: true })),
    );

    const stranger3 = await page(packet.id, 'lk-x');
    expect(stranger3.summary).toBe('领取3/10个');
    expectPacketShape(stranger3.packet, false);
    expect(stranger3.claims).toHaveLength(3);
    expect(stranger3.actions).toEqual([]);
    expect('myAmount' in stranger3).toBe(false);
    expect('notice' in stranger3).toBe(false);

    // The rest: six more a second apart, the last one 15.5 s after the packet went live.
    for (let index = 4; index <= 10; index += 1) {
      if (index === 10) clock.advance(liveAt + 15_500 - clock.now());
      else clock.advance(1000);
      const user = `lk-${index}`;
      opens.push({ user, ...(await openOk(packet.id, user)), atMs: clock.now() });
    }
    expect(opens.reduce((sum, open) => sum + fen(open.amount), 0)).toBe(2000);
    expect((await h.call('POST', `/v1/packets/${packet.id}/open`, { user: 'lk-x' })).body).toEqual({ state: 'sold_out' });
    let best = opens[0]!;
    for (const open of opens) if (fen(open.amount) > fen(best.amount) || (fen(open.amount) === fen(best.amount) && open.seq < best.seq)) best = open;
    const expectedClaims = [...opens]
      .sort((left, right) => right.seq - left.seq)
      .map((open) => ({ userId: open.user, amount: open.amount, claimedAt: new Date(open.atMs).toISOString(), best: open.user === best.user, credited: true }));

    const ownDone = await page(packet.id, 'lk-s');
    expect(ownDone.summary).toBe('10个红包共20.00元,15秒被抢光');
    expect(ownDone.packet).toMatchObject({ status: 'finished', claimedCount: 10, claimedAmount: '20.00', total: '20.00' });
    expect(ownDone.actions).toEqual([]);
    expect(ownDone.claims).toEqual(expectedClaims);
    expect(ownDone.claims.filter((claim: any) => claim.best)).toHaveLength(1);

    const openerDone = await page(packet.id, 'lk-4');
    expect(openerDone.summary).toBe('10个红包,15秒被抢光');
    expectPacketShape(openerDone.packet, false);
    expect(openerDone.packet).toMatchObject({ status: 'finished', claimedCount: 10 });
    expect(openerDone.myAmount).toBe(opens[3]!.amount);
    expect(openerDone.notice).toBe(NOTICE);
    expect(openerDone.actions).toEqual(['view_my_records']);
    expect(openerDone.claims).toEqual(expectedClaims);

    const strangerDone = await page(packet.id, 'lk-x');
    expect(strangerDone.summary).toBe('10个红包,15秒被抢光');
    expectPacketShape(strangerDone.packet, false);
    expect(strangerDone.claims).toEqual(expectedClaims);
    expect(strangerDone.actions).toEqual([]);
    expect('myAmount' in strangerDone).toBe(false);

    // The page is the same after the ledger caught up and the actor was rebuilt from storage.
    await h.settle();
    h.hongbao.engine.evictIdle(0);
    expect(await page(packet.id, 'lk-s')).toEqual(ownDone);
    expect(await page(packet.id, 'lk-4')).toEqual(openerDone);
    await expectConserved();
  });

  it('a packet emptied within the first second reads "0秒被抢光"', async () => {
    await fund('lk0-s', '10.00');
    const packet = await sendOk('lk0-s', { type: 'group_lucky', targetId: 'lk0-g', count: 2, amount: '0.02' });
    clock.advance(999);
    expect((await openOk(packet.id, 'lk0-1')).amount).toBe('0.01');
    expect((await openOk(packet.id, 'lk0-2')).amount).toBe('0.01');
    const own = await page(packet.id, 'lk0-s');
    expect(own.summary).toBe('2个红包共0.02元,0秒被抢光');
    // A tie: the earliest open has the best luck.
    expect(own.claims.map((claim: any) => [claim.userId, claim.best])).toEqual([
      ['lk0-2', false],
      ['lk0-1', true],
    ]);
    expect((await page(packet.id, 'lk0-2')).summary).toBe('2个红包,0秒被抢光');
  });

  it('the sender may open their own group packet and sees myAmount with resend, not view_my_records', async () => {
    await fund('own-s', '10.00');
    const packet = await sendOk('own-s', { type: 'group_lucky', targetId: 'own-g', count: 2, amount: '1.00' });
    const mine = await openOk(packet.id, 'own-s');
    const own = await page(packet.id, 'own-s');
    expect(own.myAmount).toBe(mine.amount);
    expect(own.notice).toBe(NOTICE);
    expect(own.actions).toEqual(['resend']);
    expect(own.summary).toBe(`已领取1/2个,共${mine.amount}/1.00元`);
    const other = await openOk(packet.id, 'own-o');
    const done = await page(packet.id, 'own-s');
    expect(done.actions).toEqual([]);
    expect(done.summary).toMatch(/^2个红包共1\.00元,\d+秒被抢光$/);
    expect(fen(mine.amount) + fen(other.amount)).toBe(100);
  });

  it('members: the sender and the listed members may view, anyone else gets 403', async () => {
    await fund('mem-s', '10.00');
    const packet = await sendOk('mem-s', { type: 'group_lucky', targetId: 'mem-g', count: 2, amount: '1.00', members: ['mem-1', 'mem-2'] });
    expect((await page(packet.id, 'mem-s')).summary).toBe('已领取0/2个,共0.00/1.00元');
    expect((await page(packet.id, 'mem-1')).summary).toBe('领取0/2个');
    expectError(await h.call('GET', `/v1/packets/${packet.id}`, { user: 'mem-x' }), 403, 'forbidden');
    await openOk(packet.id, 'mem-2');
    expectError(await h.call('GET', `/v1/packets/${packet.id}`, { user: 'mem-x' }), 403, 'forbidden');
    expect((await page(packet.id, 'mem-2')).actions).toEqual(['view_my_records']);
  });
});

describe('group_fixed', () => {
  it('claims only for the sender; the total shows to others once finished', async () => {
    await fund('fx-s', '10.00');
    const packet = await sendOk('fx-s', { type: 'group_fixed', targetId: 'fx-g', count: 3, amount: '1.50', members: ['fx-1', 'fx-2', 'fx-3', 'fx-4'] });

    const own0 = await page(packet.id, 'fx-s');
    expect(own0.summary).toBe('已领取0/3个,共0.00/4.50元');
    expect(own0.claims).toEqual([]);
    expect(own0.actions).toEqual(['resend']);

    clock.advance(2000);
    expect(await openOk(packet.id, 'fx-1')).toEqual({ state: 'claimed', amount: '1.50', seq: 1 });
    const own1 = await page(packet.id, 'fx-s');
    expect(own1.summary).toBe('已领取1/3个,共1.50/4.50元');
    expect(own1.claims).toEqual([{ userId: 'fx-1', amount: '1.50', claimedAt: new Date(clock.now()).toISOString(), best: false, credited: true }]);

    const opener1 = await page(packet.id, 'fx-1');
    expect(opener1.summary).toBe('领取1/3个');
    expectPacketShape(opener1.packet, false);
    expect('claims' in opener1).toBe(false);
    expect(opener1.myAmount).toBe('1.50');
    expect(opener1.notice).toBe(NOTICE);
    expect(opener1.actions).toEqual(['view_my_records']);

    const member = await page(packet.id, 'fx-4');
    expect(member.summary).toBe('领取1/3个');
    expectPacketShape(member.packet, false);
    expect('claims' in member).toBe(false);
    expect(member.actions).toEqual([]);
    expectError(await h.call('GET', `/v1/packets/${packet.id}`, { user: 'fx-x' }), 403, 'forbidden');

    clock.advance(1000);
    await openOk(packet.id, 'fx-2');
    clock.advance(1000);
    await openOk(packet.id, 'fx-3');
    const ownDone = await page(packet.id, 'fx-s');
    expect(ownDone.summary).toBe('3个红包共4.50元');
    expect(ownDone.packet).toMatchObject({ status: 'finished', total: '4.50', claimedAmount: '4.50', claimedCount: 3 });
    expect(ownDone.claims.map((claim: any) => claim.userId)).toEqual(['fx-3', 'fx-2', 'fx-1']);
    expect(ownDone.claims.every((claim: any) => claim.best === false)).toBe(true);
    expect(ownDone.actions).toEqual([]);

    const openerDone = await page(packet.id, 'fx-2');
    expect(openerDone.summary).toBe('3个红包共4.50元');
    expectPacketShape(openerDone.packet, true);
    expect(openerDone.packet).toMatchObject({ total: '4.50', claimedAmount: '4.50' });
    expect('claims' in openerDone).toBe(false);
    expect(openerDone.myAmount).toBe('1.50');

    const memberDone = await page(packet.id, 'fx-4');
    expect(memberDone.summary).toBe('3个红包共4.50元');
    expectPacketShape(memberDone.packet, true);
    expect('claims' in memberDone).toBe(false);
    await expectConserved();
  });

  it('a one-share group packet waits for its opener: rule 6', async () => {
    await fund('one-s', '10.00');
    const packet = await sendOk('one-s', { type: 'group_fixed', targetId: 'one-g', count: 1, amount: '6.66' });
    expect((await page(packet.id, 'one-s')).summary).toBe('红包金额6.66元,等待对方领取');
    expect((await page(packet.id, 'one-x')).summary).toBe('领取0/1个');
    await openOk(packet.id, 'one-x');
    expect((await page(packet.id, 'one-s')).summary).toBe('1个红包共6.66元');
    expect((await page(packet.id, 'one-x')).summary).toBe('1个红包共6.66元');
  });
});

describe('personal', () => {
  it('sender, target and a third user (403) before and after the open', async () => {
    await fund('ps-s', '20.00');
    const packet = await sendOk('ps-s', { type: 'personal', targetId: 'ps-t', count: 1, amount: '8.88', greeting: '生日快乐' });

    const own0 = await page(packet.id, 'ps-s');
    expect(own0.summary).toBe('红包金额8.88元,等待对方领取');
    expect(own0.packet).toMatchObject({ greeting: '生日快乐', total: '8.88', status: 'live' });
    expect(own0.claims).toEqual([]);
    expect(own0.actions).toEqual(['resend']);

    const target0 = await page(packet.id, 'ps-t');
    expect(target0.summary).toBe('领取0/1个');
    expectPacketShape(target0.packet, false);
    expect('claims' in target0).toBe(false);
    expect(target0.actions).toEqual([]);

    expectError(await h.call('GET', `/v1/packets/${packet.id}`, { user: 'ps-x' }), 403, 'forbidden');
    expect((await h.call('POST', `/v1/packets/${packet.id}/open`, { user: 'ps-s' })).body).toEqual({ state: 'not_eligible' });

    clock.advance(3000);
    expect(await openOk(packet.id, 'ps-t')).toEqual({ state: 'claimed', amount: '8.88', seq: 1 });
    const targetDone = await page(packet.id, 'ps-t');
    expect(targetDone.summary).toBe('1个红包共8.88元');
    expect(targetDone.packet).toMatchObject({ status: 'finished', total: '8.88', claimedAmount: '8.88', claimedCount: 1 });
    expect(targetDone.myAmount).toBe('8.88');
    expect(targetDone.notice).toBe(NOTICE);
    expect(targetDone.actions).toEqual(['view_my_records']);
    expect('claims' in targetDone).toBe(false);

    const ownDone = await page(packet.id, 'ps-s');
    expect(ownDone.summary).toBe('1个红包共8.88元');
    expect(ownDone.claims).toEqual([{ userId: 'ps-t', amount: '8.88', claimedAt: new Date(clock.now()).toISOString(), best: false, credited: true }]);
    expect(ownDone.actions).toEqual([]);
    expect('myAmount' in ownDone).toBe(false);

    expectError(await h.call('GET', `/v1/packets/${packet.id}`, { user: 'ps-x' }), 403, 'forbidden');
    await expectConserved();
  });
});

it('404 for an unknown packet, an impossible id and a path that escapes', async () => {
  expectError(await h.call('GET', '/v1/packets/p_nope', { user: 'any' }), 404, 'not_found');
  expectError(await h.call('GET', `/v1/packets/${'a'.repeat(65)}`, { user: 'any' }), 404, 'not_found');
  expectError(await h.call('GET', '/v1/packets/..%2F..%2Fwallet', { user: 'any' }), 404, 'not_found');
  expectError(await h.call('GET', '/v1/packets/%E4%BD%A0', { user: 'any' }), 404, 'not_found');
});
