// Proves that no balance can pass what a number holds exactly (2^53 fen): money is bounded
// where it enters, so a deposit that would take all the money held past the bound is 400 and
// changes nothing, and then no credit or refund can overflow a balance — the wallet of a user
// who holds almost everything still reads exactly after they receive more.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../support/harness.js';
import { apiClient, expectError, fen, yuan } from '../support/http-client.js';

let h: Harness;
const client = apiClient(() => h, 'bounds');
const MAX_FEN = Number.MAX_SAFE_INTEGER;
const deposit = (userId: string, amount: string, key: string) =>
  h.call('POST', '/v1/wallet/deposits', { user: 'bounds-admin', admin: true, body: { userId, amount }, headers: { 'idempotency-key': key } });

beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h.stop();
});

describe('money is bounded where it enters', () => {
  it('refuses the deposit that would take the money held past 2^53 fen, for any wallet, and credits never overflow', async () => {
    // Fill the book to 300.00 below the bound in whole deposits of at most 999999999999.99.
    const chunkFen = 99_999_999_999_999;
    let heldFen = 0;
    for (let index = 0; heldFen + chunkFen <= MAX_FEN - 30_000; index += 1) {
      expect((await deposit('whale', yuan(chunkFen), `fill-${index}`)).status).toBe(201);
      heldFen += chunkFen;
    }
    const rest = MAX_FEN - 30_000 - heldFen;
    expect((await deposit('whale', yuan(rest), 'fill-rest')).status).toBe(201);
    heldFen += rest;
    expect(await client.balance('whale')).toBe(yuan(MAX_FEN - 30_000));

    // Another user's small deposit that would pass the bound is refused: nothing changes.
    const before = await h.money();
    const refused = await deposit('minnow', '300.01', 'minnow-1');
    expectError(refused, 400, 'invalid_request');
    expect(refused.body.error.message).toMatch(/out of range/);
    expect(await client.balance('minnow')).toBe('0.00');
    expect(await h.money()).toEqual(before);

    // What fits still lands; a packet from it credited to the whale reads exactly.
    expect((await deposit('minnow', '300.00', 'minnow-2')).status).toBe(201);
    const packet = await client.sendOk('minnow', { type: 'group_fixed', targetId: 'pond', count: 1, amount: '200.00' });
    expect(await client.openOk(packet.id, 'whale')).toMatchObject({ amount: '200.00' });
    await h.settle();
    const whale = await h.call('GET', '/v1/wallet', { user: 'whale' });
    expect(whale.status).toBe(200);
    expect(fen(whale.body.balance)).toBe(MAX_FEN - 30_000 + 20_000);
    await client.expectConserved();
  });
});
