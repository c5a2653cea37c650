// Proves restart safety on the embedded default: the server process is killed with SIGKILL
// in the middle of a crowd of opens, started again on the same DATA_DIR, and every claim
// that was answered "claimed" is still there with its amount; draining each packet then pays
// exactly its total, nobody twice, and reconciliation is clean.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { issueToken } from '../../src/http/auth.js';
import { startServer, type ServerProcess } from '../support/process.js';

const SECRET = 'restart-test-secret';
const dataDir = mkdtempSync(join(tmpdir(), 'hongbao-restart-'));
const tokens = new Map<string, string>();
async function token(userId: string, admin = false) {
  if (!tokens.has(userId)) tokens.set(userId, await issueToken(SECRET, userId, { admin }));
  return tokens.get(userId)!;
}

async function call(server: ServerProcess, method: string, path: string, user: string, body?: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${await token(user, user === 'admin')}`, 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as any };
}

const toFen = (yuan: string) => Math.round(Number(yuan) * 100); // test-side check only

describe('kill -9 and restart on the embedded default', () => {
  const env = { DATA_DIR: dataDir, AUTH_SECRET: SECRET, SEED_SECRET: 'restart-seed' };
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('loses no acknowledged claim and pays nobody twice', async () => {
    let server = await startServer(env);
    const packets: { id: string; totalFen: number }[] = [];
    try {
      expect((await call(server, 'POST', '/v1/wallet/deposits', 'admin', { userId: 'sender', amount: '5000.00' }, { 'idempotency-key': 'd1' })).status).toBe(201);
      for (let index = 0; index < 8; index += 1) {
        const sent = await call(server, 'POST', '/v1/packets', 'sender', { type: 'group_lucky', targetId: 'g', count: 50, amount: '100.00' }, { 'idempotency-key': `s${index}` });
        expect(sent.status).toBe(201);
        packets.push({ id: sent.body.packet.id, totalFen: 10_000 });
      }

      // A crowd opens; the process is killed while opens are in flight.
      const acknowledged = new Map<string, { packetId: string; userId: string; amount: string }>();
      let stop = false;
      const opener = async (worker: number) => {
        for (let round = 0; !stop && round < 200; round += 1) {
          const packet = packets[(worker + round) % packets.length]!;
          const userId = `w${worker}r${round}`;
          try {
            const opened = await call(server, 'POST', `/v1/packets/${packet.id}/open`, userId);
            if (opened.body.state === 'claimed') acknowledged.set(`${packet.id}/${userId}`, { packetId: packet.id, userId, amount: opened.body.amount });
          } catch {
            return; // connection died with the process
          }
        }
      };
      const crowd = Array.from({ length: 24 }, (_, worker) => opener(worker));
      while (acknowledged.size < 120) await new Promise((resolve) => setTimeout(resolve, 5));
      await server.kill('SIGKILL');
      stop = true;
      await Promise.all(crowd);
      expect(acknowledged.size).toBeGreaterThanOrEqual(120);

      server = await startServer(env);
      // Every acknowledged claim is there, with its amount, and opening again pays nothing more.
      for (const claim of acknowledged.values()) {
        const again = await call(server, 'POST', `/v1/packets/${claim.packetId}/open`, claim.userId);
        expect(again.body).toMatchObject({ state: 'already_claimed', amount: claim.amount });
      }
      // Drain every packet with fresh users: each pays exactly its total, to distinct users.
      for (const packet of packets) {
        for (let index = 0; ; index += 1) {
          const opened = await call(server, 'POST', `/v1/packets/${packet.id}/open`, `drain${index}`);
          if (opened.body.state === 'sold_out') break;
          expect(['claimed', 'already_claimed']).toContain(opened.body.state);
        }
        const page = await call(server, 'GET', `/v1/packets/${packet.id}`, 'sender');
        expect(page.body.packet.status).toBe('finished');
        const claims: { userId: string; amount: string }[] = page.body.claims;
        expect(claims).toHaveLength(50);
        expect(new Set(claims.map((claim) => claim.userId)).size).toBe(50);
        expect(claims.reduce((sum, claim) => sum + toFen(claim.amount), 0)).toBe(packet.totalFen);
      }
      // The ledger is asynchronous: give it a moment, then the books must balance.
      let report: any;
      for (let attempt = 0; attempt < 50; attempt += 1) {
        report = (await call(server, 'POST', '/v1/admin/reconcile', 'admin')).body;
        if (report.discrepancies.length === 0) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(report.discrepancies).toEqual([]);
      expect(report.checkedPackets).toBe(8);
      const sender = await call(server, 'GET', '/v1/wallet', 'sender');
      expect(sender.body.balance).toBe('4200.00');
    } finally {
      await server.kill('SIGKILL');
    }
  }, 180_000);
});
