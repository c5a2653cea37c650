// What the HTTP suites share: reading yuan back as fen, the error shape, and a small client
// for one harness (fund, send, open, view, and the money-conservation check after a scenario).
import { expect } from 'vitest';
import type { Harness } from './harness.js';

export type Reply = { status: number; body: any };

/** Test-side reading of a two-decimal yuan string, with no float. */
export function fen(yuan: string): number {
  const match = /^(\d+)\.(\d\d)$/.exec(yuan);
  if (match === null) throw new Error(`not a two-decimal yuan string: ${yuan}`);
  return Number(match[1]) * 100 + Number(match[2]);
}

export const yuan = (amountFen: number) => `${Math.floor(amountFen / 100)}.${String(amountFen % 100).padStart(2, '0')}`;

/** An API.md error: the status, exactly {"error": {code, message}}, and the code. */
export function expectError(reply: Reply, status: number, code: string): void {
  expect(reply.status, JSON.stringify(reply.body)).toBe(status);
  expect(Object.keys(reply.body)).toEqual(['error']);
  expect(reply.body.error.code).toBe(code);
  expect(typeof reply.body.error.message).toBe('string');
  expect(reply.body.error.message.length).toBeGreaterThan(0);
}

/** A client on the harness that `current()` returns (suites assign theirs in beforeAll). */
export function apiClient(current: () => Harness, prefix: string) {
  let keySeq = 0;
  const newKey = () => `${prefix}-key-${++keySeq}`;
  const h = () => current();
  return {
    newKey,
    async fund(userId: string, amount: string): Promise<void> {
      const reply = await h().call('POST', '/v1/wallet/deposits', {
        user: `${prefix}-admin`,
        admin: true,
        body: { userId, amount },
        headers: { 'idempotency-key': newKey() },
      });
      expect(reply.status).toBe(201);
    },
    async sendOk(user: string, body: Record<string, unknown>): Promise<any> {
      const reply = await h().call('POST', '/v1/packets', { user, body, headers: { 'idempotency-key': newKey() } });
      expect(reply.status, JSON.stringify(reply.body)).toBe(201);
      return reply.body.packet;
    },
    open: (id: string, user: string): Promise<Reply> => h().call('POST', `/v1/packets/${id}/open`, { user }),
    grab: (id: string, user: string): Promise<Reply> => h().call('POST', `/v1/packets/${id}/grab`, { user }),
    async openOk(id: string, user: string): Promise<{ amount: string; seq: number }> {
      const reply = await h().call('POST', `/v1/packets/${id}/open`, { user });
      expect(reply.body.state, JSON.stringify(reply.body)).toBe('claimed');
      return reply.body;
    },
    async page(id: string, user: string): Promise<any> {
      const reply = await h().call('GET', `/v1/packets/${id}`, { user });
      expect(reply.status, JSON.stringify(reply.body)).toBe(200);
      return reply.body;
    },
    /** The settled balance: after the ledger caught up, nothing is pending. */
    async balance(user: string): Promise<string> {
      await h().settle();
      const reply = await h().call('GET', '/v1/wallet', { user });
      expect(reply.body.pending).toBe('0.00');
      return reply.body.balance;
    },
    reconcile: () => h().call('POST', '/v1/admin/reconcile', { user: `${prefix}-auditor`, admin: true }),
    /** Σ balances = 0, wallets + live escrow = deposits + what providers paid in, and reconciliation is clean. */
    async expectConserved(): Promise<void> {
      await h().settle();
      const money = await h().money();
      expect(money.book).toBe(0);
      expect(money.wallets + money.escrow).toBe(money.deposited + money.providers);
      const report = await h().call('POST', '/v1/admin/reconcile', { user: `${prefix}-auditor`, admin: true });
      expect(report.status).toBe(200);
      expect(report.body.discrepancies).toEqual([]);
    },
  };
}
