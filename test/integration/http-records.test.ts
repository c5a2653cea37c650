// Proves GET /v1/me/sent and /v1/me/received: per-year (China time) counts, totals, bestLuckCount, items, cursor paging without duplicates, and 400 on bad cursor/year.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock, startHarness, type Harness } from '../support/harness.js';
import { apiClient, fen, yuan, expectError } from '../support/http-client.js';


let h: Harness;
const { fund, sendOk, openOk, expectConserved } = apiClient(() => h, 'records');
/** 2025-12-31 23:00 in China (UTC+8): the calendar year turns within the suite. */
const clock = new ManualClock(Date.UTC(2025, 11, 31, 15, 0, 0));

beforeAll(async () => {
  h = await startHarness({ clock });
});
afterAll(async () => {
  await h?.stop();
});






async function records(kind: 'sent' | 'received', user: string, query = ''): Promise<any> {
  const reply = await h.call('GET', `/v1/me/${kind}${query}`, { user });
  expect(reply.status, JSON.stringify(reply.body)).toBe(200);
  return reply.body;
}

/** Every page, following nextCursor; checks the page sizes on the way. */
async function allPages(kind: 'sent' | 'received', user: string, year?: number): Promise<{ pages: any[]; items: any[] }> {
  const pages: any[] = [];
  let cursor: string | null = '';
  do {
    const params = new URLSearchParams();
    if (year !== undefined) params.set('year', String(year));
    if (cursor !== '') params.set('cursor', cursor!);
    const body = await records(kind, user, `?${params.toString()}`);
    pages.push(body);
    cursor = body.nextCursor;
    if (cursor !== null) {
      expect(typeof cursor).toBe('string');
      expect(body.items).toHaveLength(20);
    }
    expect(pages.length).toBeLessThan(20);
  } while (cursor !== null);
  return { pages, items: pages.flatMap((body) => body.items) };
}


describe('my records', () => {
  const sent2025: any[] = [];
  const sent2026: any[] = [];
  const received: { packetId: string; senderId: string; type: string; amount: string; best: boolean; atMs: number }[] = [];

  it('counts the year in China time: 23:00 on Dec 31 is 2025, 00:30 on Jan 1 is 2026 (UTC still 2025)', async () => {
    await fund('rec-s', '1000.00');
    await fund('rec-o', '100.00');
    sent2025.push(await sendOk('rec-s', { type: 'group_fixed', targetId: 'rec-g', count: 2, amount: '1.00' }));
    sent2025.push(await sendOk('rec-s', { type: 'personal', targetId: 'rec-r', count: 1, amount: '0.50' }));
    const opened = await openOk(sent2025[1].id, 'rec-r');
    received.push({ packetId: sent2025[1].id, senderId: 'rec-s', type: 'personal', amount: opened.amount, best: false, atMs: clock.now() });

    const before = await records('sent', 'rec-s');
    expect(before.year).toBe(2025);
    expect(before.count).toBe(2);
    expect(before.total).toBe('2.50');

    clock.advance(90 * 60 * 1000); // 2025-12-31T16:30Z = 2026-01-01 00:30 in China
    expect(new Date(clock.now()).getUTCFullYear()).toBe(2025);
    const now = await records('sent', 'rec-s');
    expect(now.year).toBe(2026);
    expect(now).toMatchObject({ count: 0, total: '0.00', items: [], nextCursor: null });
    const old = await records('sent', 'rec-s', '?year=2025');
    expect(old.year).toBe(2025);
    expect(old.count).toBe(2);
    expect(old.items.map((item: any) => item.id).sort()).toEqual(sent2025.map((packet) => packet.id).sort());
    await h.settle(); // records are read from the ledger, which credits claims asynchronously
    const oldReceived = await records('received', 'rec-r', '?year=2025');
    expect(oldReceived).toMatchObject({ year: 2025, count: 1, total: '0.50', bestLuckCount: 0 });
    expect((await records('received', 'rec-r')).count).toBe(0);
  });

  it('sent: 26 packets page 20 + 6 by cursor, newest first, no duplicates, with counts and totals', async () => {
    const types = ['group_lucky', 'group_fixed', 'personal'] as const;
    for (let index = 0; index < 25; index += 1) {
      // Several packets share a millisecond: the cursor must still not skip or repeat any.
      if (index % 3 === 0) clock.advance(1);
      const type = types[index % 3]!;
      const amount = yuan(index + 1);
      const body =
        type === 'group_lucky'
          ? { type, targetId: 'rec-g', count: 1, amount }
          : type === 'group_fixed'
            ? { type, targetId: 'rec-g', count: 2, amount }
            : { type, targetId: 'rec-r', count: 1, amount };
      sent2026.push(await sendOk('rec-s', body));
    }
    // One 2-share lucky packet opened by rec-r first and rec-o second.
    clock.advance(1000);
    sent2026.push(await sendOk('rec-s', { type: 'group_lucky', targetId: 'rec-g', count: 2, amount: '0.03' }));

    const { pages, items } = await allPages('sent', 'rec-s');
    expect(pages).toHaveLength(2);
    expect(pages[0].items).toHaveLength(20);
    expect(pages[1].items).toHaveLength(6);
    expect(pages[1].nextCursor).toBeNull();
    for (const body of pages) {
      expect(body.year).toBe(2026);
      expect(body.count).toBe(26);
      expect(body.total).toBe(yuan(sent2026.reduce((sum, packet) => sum + fen(packet.total), 0)));
    }
    const ids = items.map((item) => item.id);
    expect(new Set(ids).size).toBe(26);
    expect([...ids].sort()).toEqual(sent2026.map((packet) => packet.id).sort());
    // Newest first: createdAt descending, id descending within one millisecond.
    for (let index = 1; index < items.length; index += 1) {
      const previous = items[index - 1];
      const current = items[index];
      const order = Date.parse(previous.createdAt) - Date.parse(current.createdAt) || (previous.id > current.id ? 1 : -1);
      expect(order).toBeGreaterThan(0);
    }
    // Items are the sender's own packets: totals shown.
    const byId = new Map(items.map((item) => [item.id, item]));
    for (const packet of sent2026) {
      expect(byId.get(packet.id)).toMatchObject({ ...packet, status: 'live', claimedCount: 0, claimedAmount: '0.00' });
    }
    // Nothing sent: one empty page.
    const none = await allPages('sent', 'rec-o');
    expect(none.pages).toHaveLength(1);
    expect(none.pages[0]).toMatchObject({ count: 0, total: '0.00', items: [], nextCursor: null });
    // Exactly one page's worth is not followed by an empty page.
    await fund('rec-20', '20.00');
    for (let index = 0; index < 20; index += 1) await sendOk('rec-20', { type: 'group_fixed', targetId: 'rec-g', count: 1, amount: '1.00' });
    const twenty = await allPages('sent', 'rec-20');
    expect(twenty.pages).toHaveLength(1);
    expect(twenty.pages[0]).toMatchObject({ count: 20, total: '20.00', nextCursor: null });
    expect(twenty.items).toHaveLength(20);
  });

  it('received: counts, totals, bestLuckCount, items and paging', async () => {
    for (const packet of sent2026) {
      clock.advance(1);
      const opened = await openOk(packet.id, 'rec-r');
      const best = packet.type === 'group_lucky' && packet.count === 1;
      received.push({ packetId: packet.id, senderId: 'rec-s', type: packet.type, amount: opened.amount, best, atMs: clock.now() });
    }
    // The 2-share lucky packet: rec-o takes the rest; best luck goes to the larger share (the first on a tie).
    const last = sent2026[sent2026.length - 1];
    const mine = received[received.length - 1]!;
    const theirs = await openOk(last.id, 'rec-o');
    mine.best = fen(mine.amount) >= fen(theirs.amount);
    await h.settle();

    const expected = received.filter((item) => new Date(item.atMs + 8 * 3600_000).getUTCFullYear() === 2026);
    expect(expected).toHaveLength(26);
    const { pages, items } = await allPages('received', 'rec-r');
    expect(pages).toHaveLength(2);
    expect(pages[1].items).toHaveLength(6);
    for (const body of pages) {
      expect(body.year).toBe(2026);
      expect(body.count).toBe(26);
      expect(body.total).toBe(yuan(expected.reduce((sum, item) => sum + fen(item.amount), 0)));
      expect(body.bestLuckCount).toBe(expected.filter((item) => item.best).length);
    }
    expect(new Set(items.map((item) => item.packetId)).size).toBe(26);
    const newestFirst = [...expected].sort((left, right) => right.atMs - left.atMs);
    expect(items).toEqual(
      newestFirst.map((item) => ({
        packetId: item.packetId,
        senderId: item.senderId,
        type: item.type,
        amount: item.amount,
        claimedAt: new Date(item.atMs).toISOString(),
        best: item.best,
        credited: true,
      })),
    );
    const theirRecords = await records('received', 'rec-o');
    expect(theirRecords).toMatchObject({ count: 1, total: theirs.amount, bestLuckCount: mine.best ? 0 : 1 });

    // The sender's records now show the packets finished, with what was claimed.
    const sentNow = (await allPages('sent', 'rec-s')).items;
    for (const item of sentNow) {
      expect(item.claimedCount).toBe(item.type === 'group_fixed' ? 1 : item.count);
      expect(item.status).toBe(item.type === 'group_fixed' ? 'live' : 'finished');
    }
    await expectConserved();
  });

  it('an empty year has zero counts and no cursor', async () => {
    for (const year of [2000, 2024, 2100]) {
      expect(await records('sent', 'rec-s', `?year=${year}`)).toEqual({ year, count: 0, total: '0.00', items: [], nextCursor: null });
      expect(await records('received', 'rec-r', `?year=${year}`)).toEqual({
        year,
        count: 0,
        total: '0.00',
        bestLuckCount: 0,
        items: [],
        nextCursor: null,
      });
    }
    // An empty cursor is the first page (API.md writes `cursor=`).
    expect((await records('sent', 'rec-s', '?year=2026&cursor=')).items).toHaveLength(20);
  });

  it.each([
    ['a non-base64 cursor', '?cursor=!!!'],
    ['a cursor that is base64 but not ours', `?cursor=${Buffer.from('{"a":1}').toString('base64url')}`],
    ['a cursor with a float time', `?cursor=${Buffer.from('[1.5,"p"]').toString('base64url')}`],
    ['a cursor of garbage', '?cursor=garbage'],
    ['a too long cursor', `?cursor=${'A'.repeat(201)}`],
    ['a cursor whose time is past what a date can hold', `?cursor=${Buffer.from('[9000000000000000,"p_x"]').toString('base64url')}`],
    ['a cursor whose time is before 1970', `?cursor=${Buffer.from('[-1,"p_x"]').toString('base64url')}`],
    ['a cursor whose id holds a NUL', `?cursor=${Buffer.from('[1700000000000,"p\\u0000x"]').toString('base64url')}`],
    ['a cursor whose id is no id', `?cursor=${Buffer.from('[1700000000000,"\' or 1=1 --"]').toString('base64url')}`],
    ['a cursor with extra parts', `?cursor=${Buffer.from('[1700000000000,"p_x",3]').toString('base64url')}`],
    ['a cursor of invalid UTF-8', `?cursor=${Buffer.from([0x5b, 0xff, 0xfe, 0x5d]).toString('base64url')}`],
    ['year=abc', '?year=abc'],
    ['year=1999', '?year=1999'],
    ['year=2101', '?year=2101'],
    ['year=2026.5', '?year=2026.5'],
    ['year=-2026', '?year=-2026'],
    ['year=1e3', '?year=1e3'],
  ])('400 invalid_request for %s', async (_label, query) => {
    expectError(await h.call('GET', `/v1/me/sent${query}`, { user: 'rec-s' }), 400, 'invalid_request');
    expectError(await h.call('GET', `/v1/me/received${query}`, { user: 'rec-r' }), 400, 'invalid_request');
  });

  it('401 without a token', async () => {
    expectError(await h.call('GET', '/v1/me/sent'), 401, 'unauthorized');
    expectError(await h.call('GET', '/v1/me/received'), 401, 'unauthorized');
  });
});
