// Proves that the ledger never drops a conflicting duplicate silently, end to end: a claim
// planted in the event log with other terms than the one booked shows up in
// POST /v1/admin/reconcile as a named conflict (and in the metrics), pays nobody, and leaves
// the money conserved; a claim the log holds but the ledger lost is found by holding the log
// against the ledger.
import { sql } from 'drizzle-orm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../support/harness.js';
import { apiClient, fen } from '../support/http-client.js';

let h: Harness;
const client = apiClient(() => h, 'conflict');

beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h.stop();
});

async function sentAndOpened() {
  await client.fund('c-sender', '10.00');
  const packet = await client.sendOk('c-sender', { type: 'group_fixed', targetId: 'c-g', count: 3, amount: '1.00' });
  const opened = await client.openOk(packet.id, 'c-alice');
  await client.expectConserved();
  return { packetId: packet.id as string, opened };
}

describe('a conflicting claim in the log', () => {
  it('is recorded as a named conflict, reported by reconcile, counted, and pays nobody', async () => {
    const { packetId, opened } = await sentAndOpened();
    // Another user under the same seq, and the same user again under another seq.
    await h.hongbao.log.append([
      { kind: 'claim', packetId, seq: opened.seq, userId: 'c-mallory', amountFen: fen(opened.amount), atMs: Date.now() },
      { kind: 'claim', packetId, seq: opened.seq + 1, userId: 'c-alice', amountFen: 100, atMs: Date.now() },
    ]);
    await h.settle();

    const report = await client.reconcile();
    expect(report.status).toBe(200);
    const conflicts = report.body.discrepancies.filter((item: { kind: string }) => item.kind === 'conflict');
    expect(conflicts).toHaveLength(2);
    expect(conflicts.map((item: { message: string }) => item.message).join('\n')).toMatch(/exists_with_different_user/);
    expect(conflicts.map((item: { message: string }) => item.message).join('\n')).toMatch(/user_already_claimed_other_seq/);

    // Nothing of the planted claims was booked: nobody was paid, the books still balance.
    expect(await client.balance('c-mallory')).toBe('0.00');
    expect(await client.balance('c-alice')).toBe(opened.amount);
    const money = await h.money();
    expect(money.book).toBe(0);
    expect(money.wallets + money.escrow).toBe(money.deposited);

    const metrics = await (await h.app.request('/metrics')).text();
    expect(metrics).toMatch(/^hongbao_ledger_conflicts_total 2$/m);

    // A replay of the same log records nothing new.
    await h.hongbao.log.append([{ kind: 'claim', packetId, seq: opened.seq, userId: 'c-mallory', amountFen: fen(opened.amount), atMs: Date.now() }]);
    await h.settle();
    expect((await client.reconcile()).body.discrepancies.filter((item: { kind: string }) => item.kind === 'conflict')).toHaveLength(2);
  });

  it('a claim the log holds but the ledger lost is a discrepancy of the log against the ledger', async () => {
    const { packetId, opened } = await sentAndOpened();
    // What a consumer that dropped the claim would have left: no claim row (the money moved back).
    const db = h.hongbao.database;
    await db.execute(sql`delete from claims where packet_id = ${packetId} and seq = ${opened.seq}`);
    const report = await client.reconcile();
    expect(report.body.discrepancies).toEqual(
      expect.arrayContaining([expect.objectContaining({ kind: 'log', message: expect.stringContaining('c-alice') })]),
    );
    expect(report.body.checkedLogClaims).toBeGreaterThanOrEqual(1);
  });
});
