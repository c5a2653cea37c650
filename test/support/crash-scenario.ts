// A crowd opens many packets on a real server process while something is broken on purpose
// (the engine killed, the ledger consumer killed, Kafka or Postgres restarted); afterwards
// every claim that was answered "claimed" must still be there with its amount, draining each
// packet must pay exactly its total to distinct users, and reconciliation must be clean.
import { expect } from 'vitest';
import { issueToken } from '../../src/http/auth.js';
import type { ServerProcess } from './process.js';

export const CRASH_SECRET = 'crash-test-secret';

const tokens = new Map<string, string>();
async function token(userId: string) {
  if (!tokens.has(userId)) tokens.set(userId, await issueToken(CRASH_SECRET, userId, { admin: userId === 'admin' }));
  return tokens.get(userId)!;
}

export async function call(baseUrl: string, method: string, path: string, user: string, body?: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${await token(user)}`, 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: response.status, body: (await response.json()) as any };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const toFen = (yuan: string) => Math.round(Number(yuan) * 100); // test-side check only

export interface CrashScenario {
  /** The engine to send traffic to now (it may change when the engine is restarted). */
  engine(): ServerProcess;
  /** Breaks something and (eventually) mends it; the crowd keeps opening meanwhile. */
  disrupt(): Promise<void>;
  packets?: number;
  /** Shares of each packet (a lucky packet of 100.00). */
  sharesPerPacket?: number;
  /** Claims acknowledged before the disruption: what must survive it. */
  acknowledgedBeforeDisrupt?: number;
  openersPerRound?: number;
}

export interface CrashReport {
  acknowledged: number;
  refusedWhileBroken: number;
}

/** Calls `attempt` until it answers (the system may still be mending), up to a bound. */
async function eventually<T>(attempt: () => Promise<T>, accept: (value: T) => boolean, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await attempt();
      if (accept(value)) return value;
      last = value;
    } catch (error) {
      last = error instanceof Error ? `${error.name}: ${error.message}` : error;
    }
    await sleep(200);
  }
  throw new Error(`did not settle within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
}

/** An open's final answer: not a 503, and not `busy` (shed, or its slot is being taken over: retry). */
const answered = (response: { status: number; body: any }) => response.status === 200 && response.body.state !== 'busy';

export async function runCrashScenario(scenario: CrashScenario): Promise<CrashReport> {
  const url = () => scenario.engine().url;
  const packetCount = scenario.packets ?? 8;
  const shares = scenario.sharesPerPacket ?? 60;
  const acknowledgedBefore = scenario.acknowledgedBeforeDisrupt ?? 100;
  expect((await call(url(), 'POST', '/v1/wallet/deposits', 'admin', { userId: 'sender', amount: '5000.00' }, { 'idempotency-key': 'd1' })).status).toBe(201);
  const packets: string[] = [];
  for (let index = 0; index < packetCount; index += 1) {
    const sent = await call(url(), 'POST', '/v1/packets', 'sender', { type: 'group_lucky', targetId: 'g', count: shares, amount: '100.00' }, { 'idempotency-key': `s${index}` });
    expect(sent.status).toBe(201);
    packets.push(sent.body.packet.id);
  }

  const acknowledged = new Map<string, { packetId: string; userId: string; amount: string }>();
  let refusedWhileBroken = 0;
  let stop = false;
  const opener = async (worker: number) => {
    for (let round = 0; !stop && round < 400; round += 1) {
      const packetId = packets[(worker + round) % packets.length]!;
      const userId = `w${worker}r${round}`;
      try {
        const opened = await call(url(), 'POST', `/v1/packets/${packetId}/open`, userId);
        if (opened.body.state === 'claimed') acknowledged.set(`${packetId}/${userId}`, { packetId, userId, amount: opened.body.amount });
        else if (opened.status >= 500) refusedWhileBroken += 1;
        if (opened.status === 503) await sleep(50);
      } catch (error) {
        // The engine process is gone for a moment: the connection is refused or reset.
        if (!(error instanceof TypeError)) throw error;
        refusedWhileBroken += 1;
        await sleep(50);
      }
    }
  };
  const crowd = Array.from({ length: scenario.openersPerRound ?? 24 }, (_, worker) => opener(worker));
  while (acknowledged.size < acknowledgedBefore) await sleep(5);
  await scenario.disrupt();
  // Keep the crowd going a little after the mend, then stop it.
  await sleep(1_000);
  stop = true;
  await Promise.all(crowd);
  expect(acknowledged.size).toBeGreaterThanOrEqual(acknowledgedBefore);

  // Every acknowledged claim is still there with its amount; opening again pays nothing more.
  for (const claim of acknowledged.values()) {
    const again = await eventually(
      () => call(url(), 'POST', `/v1/packets/${claim.packetId}/open`, claim.userId),
      answered,
    );
    expect(again.body, `claim ${claim.userId} on ${claim.packetId}`).toMatchObject({ state: 'already_claimed', amount: claim.amount });
  }
  // Drain every packet: exactly its total, to distinct users.
  for (const packetId of packets) {
    for (let index = 0; ; index += 1) {
      const opened = await eventually(() => call(url(), 'POST', `/v1/packets/${packetId}/open`, `drain${index}`), answered);
      if (opened.body.state === 'sold_out') break;
      expect(['claimed', 'already_claimed']).toContain(opened.body.state);
    }
    const page = await eventually(
      () => call(url(), 'GET', `/v1/packets/${packetId}`, 'sender'),
      (response) => response.status === 200 && response.body.packet.status === 'finished',
    );
    const claims: { userId: string; amount: string }[] = page.body.claims;
    expect(claims).toHaveLength(shares);
    expect(new Set(claims.map((claim) => claim.userId)).size).toBe(shares);
    expect(claims.reduce((sum, claim) => sum + toFen(claim.amount), 0)).toBe(10_000);
  }
  // The ledger books asynchronously: once it has caught up the books must balance exactly.
  const report = await eventually(
    () => call(url(), 'POST', '/v1/admin/reconcile', 'admin'),
    (response) => response.status === 200 && response.body.discrepancies.length === 0 && response.body.checkedPackets === packetCount,
  );
  expect(report.body.discrepancies).toEqual([]);
  const sender = await call(url(), 'GET', '/v1/wallet', 'sender');
  expect(sender.body.balance).toBe((5000 - packetCount * 100).toFixed(2));
  return { acknowledged: acknowledged.size, refusedWhileBroken };
}
