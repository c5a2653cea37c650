// One ledger conformance suite, written once against the LedgerContract and run against every
// ledger: the simulator's (test/unit/ledger-sim.test.ts), the real consumer on PGlite and on the
// Postgres server (test/integration/ledger.test.ts). It proves: transfers are idempotent by id
// and a reused id with other terms is a named conflict; sending checks the balance atomically;
// a batch applied twice changes nothing; every conflicting event (another amount, another user,
// a second seq for one user, a refund with another amount) is reported by its code, recorded
// once, skipped while the rest of the batch is applied, and reported by reconciliation; and
// reconciliation finds a broken book and a claim in the log that the ledger never booked.
import { describe, expect, it } from 'vitest';
import { InvariantError } from '../../src/domain/errors.js';
import type { Packet } from '../../src/domain/packet.js';
import type { LedgerContract } from './ledger-contract.js';
import type { ClaimEvent, ExpireEvent } from '../../src/log/events.js';

export interface LedgerUnderTest {
  readonly ledger: LedgerContract;
  /** A crash before any position was stored: the ledger reads the whole log again; resolves when caught up. */
  replayFromStart(): Promise<void>;
  /** A consumer bug: the events go into the log and the ledger's position moves past them unapplied. */
  skipInLog(events: readonly ClaimEvent[]): Promise<void>;
  /** A hand edit: the wallet's balance moves without a transfer. */
  corruptBalance(userId: string, deltaFen: number): Promise<void>;
  /** A hand edit: the packet is marked refunded without the refund transfer. */
  closeWithoutRefund(packetId: string, refundFen: number): Promise<void>;
  cleanup(): Promise<void>;
}

export const packetOf = (id: string, senderId: string, totalFen: number, count: number): Packet => ({
  id, type: 'group_lucky', senderId, targetId: 'g1', count, totalFen, greeting: 'hi', members: null,
  createdAtMs: Date.UTC(2026, 5, 1), liveAtMs: Date.UTC(2026, 5, 1), expiresAtMs: Date.UTC(2026, 5, 2),
});

export const claim = (packetId: string, seq: number, userId: string, amountFen: number): ClaimEvent => ({
  kind: 'claim', packetId, seq, userId, amountFen, atMs: Date.UTC(2026, 5, 1) + seq * 1000,
});

const expire = (packetId: string, senderId: string, refundFen: number): ExpireEvent => ({
  kind: 'expire', packetId, senderId, refundFen, atMs: Date.UTC(2026, 5, 2),
});

const kinds = (report: { discrepancies: readonly { kind: string; id: string }[] }) =>
  report.discrepancies.map((item) => `${item.kind}:${item.id}`).sort();

/** A funded sender and a live packet of `count` shares. */
async function livePacket(ledger: LedgerContract, packetId: string, totalFen: number, count: number) {
  expect(await ledger.depositTo(`${packetId}-sender`, 10_000, `${packetId}-funds`)).toEqual({ ok: true, balanceFen: 10_000 });
  expect((await ledger.sendPacket(packetOf(packetId, `${packetId}-sender`, totalFen, count))).ok).toBe(true);
}

export function describeLedger(name: string, open: () => Promise<LedgerUnderTest>): void {
  describe(`ledger: ${name}`, () => {
    const withLedger = (title: string, body: (under: LedgerUnderTest) => Promise<void>) =>
      it(title, async () => {
        const under = await open();
        try {
          await body(under);
        } finally {
          await under.cleanup();
        }
      });

    withLedger('posts a transfer once per id, keeps Σ balances = 0, and names an id reused with other terms', async ({ ledger }) => {
      expect(await ledger.depositTo('alice', 10_000, 'ref-1')).toEqual({ ok: true, balanceFen: 10_000 });
      expect(await ledger.depositTo('alice', 10_000, 'ref-1')).toEqual({ ok: true, balanceFen: 10_000 });
      expect(await ledger.depositTo('alice', 500, 'ref-2')).toEqual({ ok: true, balanceFen: 10_500 });
      expect(await ledger.sumOfBalances()).toBe(0n);
      expect(await ledger.depositTo('alice', 1, 'ref-1')).toMatchObject({
        ok: false,
        conflict: { code: 'exists_with_different_amount', transferId: 'deposit:ref-1', expected: { amountFen: 1 }, stored: { amountFen: 10_000 } },
      });
      expect(await ledger.depositTo('bob', 10_000, 'ref-1')).toMatchObject({
        ok: false,
        conflict: { code: 'exists_with_different_accounts', expected: { creditAccountId: 'wallet:bob' }, stored: { creditAccountId: 'wallet:alice' } },
      });
      await expect(ledger.depositTo('alice', 0, 'bad')).rejects.toThrow(InvariantError);
      expect(await ledger.walletBalance('alice')).toBe(10_500);
      expect(await ledger.walletBalance('bob')).toBe(0);
      expect(await ledger.sumOfBalances()).toBe(0n);
    });

    withLedger('sends only with enough balance, atomically', async ({ ledger }) => {
      await ledger.depositTo('bob', 1_000, 'bob-1');
      expect(await ledger.sendPacket(packetOf('pk-short', 'bob', 1_001, 1))).toMatchObject({ ok: false, reason: 'insufficient_balance' });
      expect(await ledger.loadPacket('pk-short')).toBeNull();
      expect(await ledger.walletBalance('bob')).toBe(1_000);
      // Two sends racing on one wallet: only one of them fits.
      const results = await Promise.all([ledger.sendPacket(packetOf('pk-a', 'bob', 600, 2)), ledger.sendPacket(packetOf('pk-b', 'bob', 600, 2))]);
      expect(results.filter((result) => result.ok)).toHaveLength(1);
      expect(await ledger.walletBalance('bob')).toBe(400);
      expect(await ledger.sumOfBalances()).toBe(0n);
    });

    withLedger('applies claims and a refund once, even when the log is replayed from the start', async (under) => {
      const { ledger } = under;
      await ledger.depositTo('carol', 10_000, 'carol-1');
      expect((await ledger.sendPacket(packetOf('pk-c', 'carol', 1_000, 3))).ok).toBe(true);
      const events = [
        claim('pk-c', 1, 'dan', 300),
        claim('pk-c', 2, 'erin', 200),
        claim('pk-c', 1, 'dan', 300), // a producer retry: the same event twice
        expire('pk-c', 'carol', 500),
      ];
      expect(await ledger.applyEvents(events)).toEqual({ applied: events, conflicts: [] });
      await under.replayFromStart();

      expect(await ledger.walletBalance('dan')).toBe(300);
      expect(await ledger.walletBalance('erin')).toBe(200);
      expect(await ledger.walletBalance('carol')).toBe(10_000 - 1_000 + 500);
      const stored = await ledger.loadPacket('pk-c');
      expect(stored?.expired).toBe(true);
      expect(stored?.claims.map((row) => [row.seq, row.userId, row.amountFen])).toEqual([[1, 'dan', 300], [2, 'erin', 200]]);
      expect(await ledger.sumOfBalances()).toBe(0n);
      const report = await ledger.reconcile();
      expect(report.discrepancies).toEqual([]);
      expect(report.checkedPackets).toBe(1);
      expect(report.checkedLogClaims).toBe(3);
    });

    withLedger('finishes a packet when its last share is applied', async ({ ledger }) => {
      await ledger.depositTo('fay', 1_000, 'fay-1');
      await ledger.sendPacket(packetOf('pk-f', 'fay', 900, 3));
      await ledger.applyEvents([claim('pk-f', 1, 'g1', 400), claim('pk-f', 2, 'g2', 400), claim('pk-f', 3, 'g3', 100)]);
      expect((await ledger.loadPacket('pk-f'))?.claims.map((row) => row.amountFen)).toEqual([400, 400, 100]);
      expect(await ledger.walletBalance('fay')).toBe(100);
      expect((await ledger.reconcile()).discrepancies).toEqual([]);
    });

    withLedger('reports a broken book', async (under) => {
      await under.ledger.depositTo('gus', 1_000, 'gus-1');
      await under.ledger.sendPacket(packetOf('pk-g', 'gus', 500, 2));
      await under.corruptBalance('gus', 7);
      await under.closeWithoutRefund('pk-g', 1);
      expect(kinds(await under.ledger.reconcile())).toEqual(['account:wallet:gus', 'book:all', 'packet:pk-g']);
    });

    withLedger('names a claim replayed with another amount, skips it, applies the rest of the batch, and records it once', async (under) => {
      const { ledger } = under;
      await livePacket(ledger, 'pk-amount', 1_000, 3);
      await ledger.applyEvents([claim('pk-amount', 1, 'dan', 300)]);
      const second = await ledger.applyEvents([claim('pk-amount', 1, 'dan', 301), claim('pk-amount', 2, 'erin', 200)]);
      expect(second.applied).toEqual([claim('pk-amount', 2, 'erin', 200)]);
      expect(second.conflicts).toHaveLength(1);
      expect(second.conflicts[0]).toMatchObject({
        code: 'exists_with_different_amount',
        transferId: 'claim:pk-amount:1',
        packetId: 'pk-amount',
        expected: { userId: 'dan', seq: 1, amountFen: 301 },
        stored: { userId: 'dan', seq: 1, amountFen: 300 },
      });
      expect(second.conflicts[0]!.message).toContain('exists_with_different_amount');
      expect(await ledger.walletBalance('dan')).toBe(300);
      expect(await ledger.walletBalance('erin')).toBe(200);
      // The consumer is not stuck: a later batch is applied.
      expect((await ledger.applyEvents([claim('pk-amount', 3, 'finn', 500)])).applied).toHaveLength(1);

      // A replay meets the same conflict again and records nothing new.
      await under.replayFromStart();
      const report = await ledger.reconcile();
      expect(kinds(report)).toEqual([`conflict:${second.conflicts[0]!.id}`]);
      expect(report.discrepancies[0]!.message).toContain('claim:pk-amount:1');
      expect(await ledger.sumOfBalances()).toBe(0n);
    });

    withLedger('names a claim whose seq is held by another user', async ({ ledger }) => {
      await livePacket(ledger, 'pk-user', 1_000, 3);
      await ledger.applyEvents([claim('pk-user', 1, 'dan', 300)]);
      const result = await ledger.applyEvents([claim('pk-user', 1, 'frank', 300)]);
      expect(result.applied).toEqual([]);
      expect(result.conflicts.map((conflict) => [conflict.code, conflict.expected.userId, conflict.stored.userId])).toEqual([
        ['exists_with_different_user', 'frank', 'dan'],
      ]);
      expect(await ledger.walletBalance('frank')).toBe(0);
      expect((await ledger.loadPacket('pk-user'))?.claims.map((row) => row.userId)).toEqual(['dan']);
      expect((await ledger.reconcile()).discrepancies.map((item) => item.kind)).toEqual(['conflict']);
    });

    withLedger('names a user claiming twice under two seqs, even within one batch', async ({ ledger }) => {
      await livePacket(ledger, 'pk-twice', 1_000, 3);
      const result = await ledger.applyEvents([claim('pk-twice', 1, 'dan', 300), claim('pk-twice', 2, 'dan', 200), claim('pk-twice', 2, 'erin', 200)]);
      expect(result.applied).toEqual([claim('pk-twice', 1, 'dan', 300), claim('pk-twice', 2, 'erin', 200)]);
      expect(result.conflicts).toHaveLength(1);
      expect(result.conflicts[0]).toMatchObject({
        code: 'user_already_claimed_other_seq',
        transferId: 'claim:pk-twice:2',
        expected: { userId: 'dan', seq: 2, amountFen: 200 },
        stored: { userId: 'dan', seq: 1, amountFen: 300 },
      });
      expect(await ledger.walletBalance('dan')).toBe(300);
      expect(await ledger.walletBalance('erin')).toBe(200);
      expect((await ledger.reconcile()).discrepancies.map((item) => item.kind)).toEqual(['conflict']);
    });

    withLedger('names a refund id reused with another amount and leaves the packet as it was closed', async ({ ledger }) => {
      await livePacket(ledger, 'pk-refund', 1_000, 3);
      await ledger.applyEvents([claim('pk-refund', 1, 'dan', 300), expire('pk-refund', 'pk-refund-sender', 700)]);
      const result = await ledger.applyEvents([expire('pk-refund', 'pk-refund-sender', 600)]);
      expect(result.applied).toEqual([]);
      expect(result.conflicts.map((conflict) => [conflict.code, conflict.transferId, conflict.expected.amountFen, conflict.stored.amountFen])).toEqual([
        ['exists_with_different_amount', 'refund:pk-refund', 600, 700],
      ]);
      expect(await ledger.walletBalance('pk-refund-sender')).toBe(10_000 - 1_000 + 700);
      expect((await ledger.reconcile()).discrepancies.map((item) => item.kind)).toEqual(['conflict']);
    });

    withLedger('holds the log against the ledger: a claim in the log that was never booked is a discrepancy', async (under) => {
      const { ledger } = under;
      await livePacket(ledger, 'pk-lost', 1_000, 3);
      await ledger.applyEvents([claim('pk-lost', 1, 'dan', 300)]);
      await under.skipInLog([claim('pk-lost', 2, 'zoe', 200)]);
      // Applied after the skipped one: the ledger goes on, the gap stays visible.
      await livePacket(ledger, 'pk-next', 500, 1);
      await ledger.applyEvents([claim('pk-next', 1, 'yan', 500)]);
      const report = await ledger.reconcile();
      expect(report.checkedLogClaims).toBe(3);
      expect(kinds(report)).toEqual(['log:claim:pk-lost:2']);
      expect(report.discrepancies[0]!.message).toContain('not booked');
    });
  });
}
