// Crash tests of provider payments (API.md, Payments through a provider), shared by the embedded
// suite (test/integration/payment-crash.test.ts) and the services one
// (test/services/payment-crash.test.ts). The sandbox provider runs HERE, in the test process, so
// its retries outlive the engine; the engine is the real server process, killed with SIGKILL and
// started again on the same data and the same port (the notify URL of its orders).
//
// Two windows:
// - between the return and the notification: held claims are answered `claimed`, the engine dies
//   before the provider's notification is delivered; the provider's retry delivers it to the
//   restarted engine;
// - between the notification and the crediting: the `funded` event is durable (answered 200) but
//   the ledger has not credited the held claims when the process dies.
// Each scenario proves its fault happened by reading the durable state (database and log) while
// the processes are down, and afterwards that every held claim was credited exactly once, the
// books reconcile and Σ wallets + escrow = what the provider paid.
import { randomBytes, type KeyObject } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import { sql } from 'drizzle-orm';
import { pino } from 'pino';
import { expect } from 'vitest';
import { rowsOf, type Db } from '../../src/ledger/database.js';
import type { PacketEvent, PaymentEvent } from '../../src/log/events.js';
import { createSandbox, type Sandbox } from '../../src/payments/sandbox/index.js';
import { exportPrivateKey, generateSigningKeyPair, signNotification } from '../../src/payments/signing.js';
import { call } from './crash-scenario.js';
import { fen, yuan } from './http-client.js';
import { startServer, type ServerProcess } from './process.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `accept` holds, or fails naming the last value seen. */
export async function eventually<T>(what: string, attempt: () => Promise<T>, accept: (value: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await attempt();
      if (accept(value)) return value;
      last = value;
    } catch (error) {
      last = error instanceof Error ? `${error.name}: ${error.message}` : error;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
    await sleep(50);
  }
}

// ---------------------------------------------------------------------------------------------
// The sandbox provider, outside the engine.

export const MERCHANT_KEY = 'payment-crash-merchant-key';
const RETRY_LOG = 'notification not accepted; will retry';

export interface OutsideSandbox {
  readonly url: string;
  readonly sandbox: Sandbox;
  readonly privateKey: KeyObject;
  /** What the engine needs to reach it and to believe it. */
  readonly env: Record<string, string>;
  /** Attempts the sandbox made that were not answered 200 (connection refused, 503 while starting...). */
  failedAttempts(): number;
  close(): Promise<void>;
}

/**
 * The sandbox served on a port of its own, with short retries (the engine is dead for a few
 * seconds only). `notify: "delayed"` waits `delayedNotifyMs`: long enough to pay, forward the
 * return, open and kill the engine before it.
 */
export async function startOutsideSandbox(options: { delayedNotifyMs?: number } = {}): Promise<OutsideSandbox> {
  const keys = generateSigningKeyPair();
  const lines: string[] = [];
  // Its own log is how a test sees the retries happen: one line per failed attempt.
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  const sandbox = createSandbox({
    dataDir: 'memory',
    merchantKey: MERCHANT_KEY,
    privateKey: exportPrivateKey(keys.privateKey),
    delayedNotifyMs: options.delayedNotifyMs ?? 3_500,
    retry: { firstDelayMs: 100, maxDelayMs: 500, attemptsMax: 1_000 },
    notifyTimeoutMs: 2_000,
    logger,
  });
  const server = createAdaptorServer({ fetch: sandbox.app.fetch });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    sandbox,
    privateKey: keys.privateKey,
    env: { SANDBOX_URL: url, SANDBOX_MERCHANT_KEY: MERCHANT_KEY, SANDBOX_PUBLIC_KEY: sandbox.publicKeyBase64 },
    failedAttempts: () => lines.filter((line) => line.includes(RETRY_LOG)).length,
    async close() {
      await sandbox.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      await closed;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The engine process on a fixed port: the notify URL its orders carry must reach it after a restart.

/** Starts the real server (npm start's entry) on `port` and waits until /readyz answers 200. */
export function startOnPort(env: Record<string, string | undefined>, port: number, readyTimeoutMs = 120_000): Promise<ServerProcess> {
  return startServer(env, readyTimeoutMs, { port });
}

/** The engine's environment besides the database, log and sandbox: no request bucket shapes these tests. */
export const ENGINE_ENV = {
  REQUESTS_BURST: '1000000',
  REQUESTS_PER_SECOND: '1000000',
  OPEN_BURST: '1000000',
  OPENS_PER_SECOND: '1000000',
  // The second sweep at the first tick of the payment jobs after a funding, so a run sees it credit nothing more.
  PAYMENT_RESWEEP_MS: '0',
};

// ---------------------------------------------------------------------------------------------
// What a scenario is run on.

/** The durable state, read while the processes that write it are down (embedded) or alongside (services). */
export interface DurableState {
  readonly db: Db;
  /** Every event of the packet in the log, in log order. */
  packetEvents(packetId: string): Promise<PacketEvent[]>;
}

export interface PaymentCrashWorld {
  readonly name: string;
  readonly sandbox: OutsideSandbox;
  /** Where API requests go now. */
  engineUrl(): string;
  /** Before the notification of the second scenario: stops anything that could credit meanwhile (services: SIGSTOP the ledger). */
  holdLedger?(): Promise<void>;
  /** kill -9 of every process of the system (the engine; the ledger too where it runs apart). */
  crash(): Promise<void>;
  /** Starts everything again on the same data. */
  restart(): Promise<void>;
  /** Reads the durable state while the system is down (as crash() left it). */
  inspect<T>(read: (state: DurableState) => Promise<T>): Promise<T>;
  /** The final audit: stops what must be stopped to read the state (the embedded engine), then reads it. */
  audit<T>(read: (state: DurableState) => Promise<T>): Promise<T>;
  /** Resolves once the ledger has booked `claims` claims of the packet. */
  waitBooked(packetId: string, claims: number): Promise<void>;
  /** Resolves once the second sweep has passed over the packet, where that can be read while running. */
  waitReswept?(packetId: string): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Steps over HTTP.

interface SentPacket {
  readonly packetId: string;
  readonly orderId: string;
  readonly payToken: string;
  readonly totalFen: number;
}

let keySeq = 0;

async function sendPaid(world: PaymentCrashWorld, sender: string, count: number, amount: string): Promise<SentPacket> {
  const sent = await call(world.engineUrl(), 'POST', '/v1/packets', sender, { type: 'group_lucky', targetId: 'g', count, amount, payWith: 'sandbox' }, {
    'idempotency-key': `pay-crash-${++keySeq}-${randomBytes(4).toString('hex')}`,
  });
  expect(sent.status, JSON.stringify(sent.body)).toBe(201);
  expect(sent.body.packet.status).toBe('pending_payment');
  expect(sent.body.payment).toMatchObject({ provider: 'sandbox', amount });
  return { packetId: sent.body.packet.id, orderId: sent.body.payment.orderId, payToken: sent.body.payment.payToken, totalFen: fen(amount) };
}

/** The payer's app on the sandbox's payment sheet: the signed return payload. */
async function payInSandbox(world: PaymentCrashWorld, packet: SentPacket, notify: 'delayed' | 'never'): Promise<string> {
  const response = await fetch(`${world.sandbox.url}/v1/pay`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ orderId: packet.orderId, payToken: packet.payToken, outcome: 'success', notify }),
  });
  const body = (await response.json()) as { returnPayload: string };
  expect(response.status, JSON.stringify(body)).toBe(200);
  return body.returnPayload;
}

async function forwardReturn(world: PaymentCrashWorld, packet: SentPacket, sender: string, returnPayload: string): Promise<void> {
  const returned = await call(world.engineUrl(), 'POST', `/v1/packets/${packet.packetId}/payment/return`, sender, { returnPayload });
  expect(returned.status, JSON.stringify(returned.body)).toBe(200);
  expect(returned.body.packet.status).toBe('awaiting_funds');
}

/** Every user opens the awaiting packet: each is answered `claimed` (a held claim). */
async function openAll(world: PaymentCrashWorld, packet: SentPacket, users: readonly string[]): Promise<Map<string, number>> {
  const claims = new Map<string, number>();
  for (let start = 0; start < users.length; start += 25) {
    const chunk = users.slice(start, start + 25);
    const replies = await Promise.all(chunk.map((user) => call(world.engineUrl(), 'POST', `/v1/packets/${packet.packetId}/open`, user)));
    replies.forEach((reply, index) => {
      expect(reply.body.state, JSON.stringify(reply.body)).toBe('claimed');
      claims.set(chunk[index]!, fen(reply.body.amount));
    });
  }
  return claims;
}

async function packetStatus(world: PaymentCrashWorld, packet: SentPacket, sender: string): Promise<string> {
  const page = await call(world.engineUrl(), 'GET', `/v1/packets/${packet.packetId}`, sender);
  expect(page.status, JSON.stringify(page.body)).toBe(200);
  return page.body.packet.status;
}

async function wallet(world: PaymentCrashWorld, user: string): Promise<{ balance: number; pending: number }> {
  const reply = await call(world.engineUrl(), 'GET', '/v1/wallet', user);
  expect(reply.status, JSON.stringify(reply.body)).toBe(200);
  return { balance: fen(reply.body.balance), pending: fen(reply.body.pending) };
}

/** A notification as the sandbox signs it, with a fresh nonce (how a provider retries). */
function signedNotification(world: PaymentCrashWorld, packet: SentPacket) {
  const body = JSON.stringify({ orderId: packet.orderId, transactionId: `tx-${packet.orderId}`, status: 'paid', amount: yuan(packet.totalFen), at: new Date().toISOString() });
  const timestamp = String(Math.floor(Date.now() / 1000));
  const nonce = randomBytes(16).toString('hex');
  return {
    body,
    headers: {
      'content-type': 'application/json',
      'x-sandbox-timestamp': timestamp,
      'x-sandbox-nonce': nonce,
      'x-sandbox-signature': signNotification(world.sandbox.privateKey, timestamp, nonce, body),
    },
  };
}

async function postNotification(world: PaymentCrashWorld, packet: SentPacket): Promise<{ status: number; body: unknown }> {
  const { body, headers } = signedNotification(world, packet);
  const response = await fetch(`${world.engineUrl()}/v1/payments/sandbox/notify`, { method: 'POST', headers, body, signal: AbortSignal.timeout(30_000) });
  return { status: response.status, body: await response.json() };
}

/** Σ of a counter's samples on the engine whose labels include `labels` (prom-client text format). */
async function metric(world: PaymentCrashWorld, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${world.engineUrl()}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null || match[1] !== name) continue;
    const has = new Set((match[2] ?? '').split(',').filter(Boolean));
    if (Object.entries(labels).every(([key, value]) => has.has(`${key}="${value}"`))) sum += Number(match[3]);
  }
  return sum;
}

/**
 * The second sweep (PAYMENT_RESWEEP_MS after a funding) must find nothing left to credit: every
 * held claim was credited by the funding itself. Waits until it has run (where that can be seen).
 */
async function expectSecondSweepFoundNothing(world: PaymentCrashWorld, packet: SentPacket, liveSeenAtMs: number): Promise<void> {
  if (world.waitReswept !== undefined) await world.waitReswept(packet.packetId);
  else await sleep(Math.max(0, liveSeenAtMs + RESWEEP_RUN_MS - Date.now()));
  expect(await metric(world, 'hongbao_payment_reswept_claims_total')).toBe(0);
}

/** PAYMENT_RESWEEP_MS (0) + one tick of the payment jobs (1 s) + a margin: the sweep has run by then. */
const RESWEEP_RUN_MS = 2_500;

// ---------------------------------------------------------------------------------------------
// What the durable state says.

interface PacketState {
  readonly status: string | undefined;
  readonly claims: number;
  readonly creditedClaims: number;
  readonly claimTransfers: number;
  readonly fundTransfers: number;
  readonly orderStatus: string | undefined;
  readonly funded: number;
  readonly paymentChanges: string[];
  /** Claim events in the log marked `held` (decided while the packet awaited its funds). */
  readonly heldClaimEvents: number;
}

async function packetState(state: DurableState, packetId: string): Promise<PacketState> {
  const [packet] = await rowsOf<{ status: string; order_status: string }>(
    state.db,
    sql`select p.status, o.status as order_status from packets p left join payment_orders o on o.packet_id = p.id where p.id = ${packetId}`,
  );
  const [claims] = await rowsOf<{ claims: number; credited: number }>(
    state.db,
    sql`select count(*)::int as claims, (count(*) filter (where credited))::int as credited from claims where packet_id = ${packetId}`,
  );
  const [transfers] = await rowsOf<{ claims: number; funds: number }>(
    state.db,
    sql`select (count(*) filter (where id like ${`claim:${packetId}:%`}))::int as claims, (count(*) filter (where id = ${`fund:${packetId}`}))::int as funds
        from transfers where id like ${`claim:${packetId}:%`} or id = ${`fund:${packetId}`}`,
  );
  const events = await state.packetEvents(packetId);
  const changes = events.filter((event): event is PaymentEvent => event.kind === 'payment').map((event) => event.change);
  return {
    status: packet?.status,
    orderStatus: packet?.order_status,
    claims: claims!.claims,
    creditedClaims: claims!.credited,
    claimTransfers: transfers!.claims,
    fundTransfers: transfers!.funds,
    funded: changes.filter((change) => change === 'funded').length,
    paymentChanges: changes,
    heldClaimEvents: events.filter((event) => event.kind === 'claim' && event.held === true).length,
  };
}

/**
 * The books after the scenario, from the database itself: each funded packet credited every claim
 * exactly once (one transfer per claim, of its amount, to its opener) and was funded once; every
 * account's balance is its transfers; Σ balances = 0; wallets + escrow = what the provider paid in.
 */
async function auditBooks(state: DurableState, packets: readonly { packet: SentPacket; claims: ReadonlyMap<string, number> }[]): Promise<void> {
  for (const { packet, claims } of packets) {
    const facts = await packetState(state, packet.packetId);
    expect(facts).toMatchObject({
      status: 'live',
      orderStatus: 'paid',
      claims: claims.size,
      creditedClaims: claims.size,
      claimTransfers: claims.size,
      fundTransfers: 1,
      funded: 1,
      heldClaimEvents: claims.size,
    });
    // The second sweep passed over it (and, by its metric, credited nothing).
    const [swept] = await rowsOf<{ swept: boolean }>(state.db, sql`select reswept_at is not null as swept from packets where id = ${packet.packetId}`);
    expect(swept?.swept, `${packet.packetId} was not swept a second time`).toBe(true);
    const transfers = await rowsOf<{ credit_account_id: string; amount_fen: string | number }>(
      state.db,
      sql`select credit_account_id, amount_fen from transfers where id like ${`claim:${packet.packetId}:%`}`,
    );
    const byWallet = new Map(transfers.map((transfer) => [transfer.credit_account_id, Number(transfer.amount_fen)]));
    expect(byWallet.size).toBe(claims.size);
    for (const [user, amountFen] of claims) expect(byWallet.get(`wallet:${user}`), user).toBe(amountFen);
    const [escrow] = await rowsOf<{ balance_fen: string | number }>(state.db, sql`select balance_fen from accounts where id = ${`escrow:${packet.packetId}`}`);
    const claimedFen = [...claims.values()].reduce((sum, amount) => sum + amount, 0);
    expect(Number(escrow?.balance_fen)).toBe(packet.totalFen - claimedFen);
  }
  const kinds = await rowsOf<{ kind: string; sum: string }>(state.db, sql`select kind, sum(balance_fen)::text as sum from accounts group by kind`);
  const of = (kind: string) => Number(kinds.find((row) => row.kind === kind)?.sum ?? 0);
  const paidIn = packets.reduce((sum, { packet }) => sum + packet.totalFen, 0);
  expect(-of('provider')).toBe(paidIn);
  expect(of('wallet') + of('escrow')).toBe(paidIn);
  expect(kinds.reduce((sum, row) => sum + Number(row.sum), 0)).toBe(0);
  const unbalanced = await rowsOf<{ id: string }>(
    state.db,
    sql`select a.id from accounts a where a.balance_fen <>
          coalesce((select sum(amount_fen) from transfers where credit_account_id = a.id), 0)
        - coalesce((select sum(amount_fen) from transfers where debit_account_id = a.id), 0)`,
  );
  expect(unbalanced).toEqual([]);
}

/** Over HTTP: each opener holds exactly what they claimed and nothing pending; the sender got nothing; reconciliation is clean. */
async function expectCreditedOnce(world: PaymentCrashWorld, sender: string, claims: ReadonlyMap<string, number>): Promise<void> {
  await inChunks([...claims], ([user, amountFen]) =>
    eventually(`${user}'s wallet`, () => wallet(world, user), (seen) => seen.balance === amountFen && seen.pending === 0),
  );
  expect(await wallet(world, sender)).toEqual({ balance: 0, pending: 0 });
  const report = await eventually(
    'reconciliation',
    () => call(world.engineUrl(), 'POST', '/v1/admin/reconcile', 'admin'),
    (reply) => reply.status === 200,
  );
  expect(report.body.discrepancies).toEqual([]);
  expect(report.body.checkedPackets).toBeGreaterThanOrEqual(1);
}

/** A provider retry with a fresh nonce, after everything is credited: accepted, and it changes nothing. */
async function expectRepeatChangesNothing(world: PaymentCrashWorld, sender: string, packet: SentPacket, claims: ReadonlyMap<string, number>): Promise<void> {
  const before = await inChunks([...claims.keys()], (user) => wallet(world, user));
  expect(await postNotification(world, packet)).toEqual({ status: 200, body: { code: 'SUCCESS' } });
  // It wrote nothing to wait for; a little time for anything it might have set off, then the same books.
  await sleep(300);
  expect(await inChunks([...claims.keys()], (user) => wallet(world, user))).toEqual(before);
  expect(await packetStatus(world, packet, sender)).toBe('live');
  const report = await call(world.engineUrl(), 'POST', '/v1/admin/reconcile', 'admin');
  expect(report.status).toBe(200);
  expect(report.body.discrepancies).toEqual([]);
}

/** `work` over every item, 20 at a time, the results in order. */
async function inChunks<Item, Result>(items: readonly Item[], work: (item: Item) => Promise<Result>): Promise<Result[]> {
  const results: Result[] = [];
  for (let start = 0; start < items.length; start += 20) results.push(...(await Promise.all(items.slice(start, start + 20).map(work))));
  return results;
}

const users = (prefix: string, count: number) => Array.from({ length: count }, (_, index) => `${prefix}-u${index}`);

// ---------------------------------------------------------------------------------------------
// Scenario 1: kill -9 between the return and the notification.

export interface ReturnCrashReport {
  readonly heldClaims: number;
  /** The sandbox's attempts that met the dead (or still starting) engine. */
  readonly failedAttempts: number;
}

export async function crashBetweenReturnAndNotification(world: PaymentCrashWorld, { openers = 12 }: { openers?: number } = {}): Promise<ReturnCrashReport> {
  const sender = `${world.name}-s1`;
  const packet = await sendPaid(world, sender, 20, '20.00');
  const paidAt = Date.now();
  // The sandbox will notify `delayedNotifyMs` after the payment: the engine dies before that.
  const returnPayload = await payInSandbox(world, packet, 'delayed');
  await forwardReturn(world, packet, sender, returnPayload);
  const claims = await openAll(world, packet, users(`${world.name}-r`, openers));
  await world.waitBooked(packet.packetId, openers);
  for (const [user, amountFen] of claims) expect(await wallet(world, user), user).toEqual({ balance: 0, pending: amountFen });

  // Just before the kill: still awaiting its funds, the notification still to be delivered.
  expect(await packetStatus(world, packet, sender)).toBe('awaiting_funds');
  expect(world.sandbox.sandbox.pendingDeliveries()).toBe(1);
  expect(world.sandbox.failedAttempts()).toBe(0);
  await world.crash();
  const killedAfterMs = Date.now() - paidAt;
  // At the kill the notification had not been answered: it is still pending at the provider.
  expect(world.sandbox.sandbox.pendingDeliveries(), `killed ${killedAfterMs} ms after the payment`).toBe(1);

  // The durable state at the kill: awaiting its funds, every claim held, no money moved, no funding in the log.
  const atKill = await world.inspect((state) => packetState(state, packet.packetId));
  expect(atKill).toEqual({
    status: 'awaiting_funds',
    orderStatus: 'created',
    claims: openers,
    creditedClaims: 0,
    claimTransfers: 0,
    fundTransfers: 0,
    funded: 0,
    paymentChanges: ['awaiting_funds'],
    heldClaimEvents: openers,
  });

  // The provider keeps trying the dead engine...
  await eventually('a failed delivery to the dead engine', async () => world.sandbox.failedAttempts(), (failed) => failed >= 1, 20_000);
  expect(world.sandbox.sandbox.pendingDeliveries()).toBe(1);
  // ...until the engine is back on the same data: the retry delivers.
  await world.restart();
  await eventually('the delivery', async () => world.sandbox.sandbox.pendingDeliveries(), (pending) => pending === 0, 30_000);
  await eventually('the packet live', () => packetStatus(world, packet, sender), (status) => status === 'live');
  const liveSeenAtMs = Date.now();
  const failedAttempts = world.sandbox.failedAttempts();
  // It was the provider's notification that funded it (not the server's own query at a timeout).
  expect(await metric(world, 'hongbao_payment_signals_total', { source: 'notification', change: 'funded' })).toBe(1);
  expect(await metric(world, 'hongbao_payment_signals_total', { source: 'query' })).toBe(0);

  await expectCreditedOnce(world, sender, claims);
  await expectRepeatChangesNothing(world, sender, packet, claims);
  await expectSecondSweepFoundNothing(world, packet, liveSeenAtMs);
  await world.audit((state) => auditBooks(state, [{ packet, claims }]));
  return { heldClaims: openers, failedAttempts };
}

// ---------------------------------------------------------------------------------------------
// Scenario 2: kill -9 between the notification and the crediting.

export interface NotificationCrashReport {
  readonly heldClaims: number;
  /** Attempts made until one hit the window (the first, when the ledger is held). */
  readonly attempts: number;
  /** What each attempt found at the kill. */
  readonly found: readonly string[];
}

export async function crashBetweenNotificationAndCrediting(
  world: PaymentCrashWorld,
  { openers = 80, attemptsMax = 5 }: { openers?: number; attemptsMax?: number } = {},
): Promise<NotificationCrashReport> {
  const done: { packet: SentPacket; claims: Map<string, number> }[] = [];
  const found: string[] = [];
  let hit: { packet: SentPacket; sender: string; claims: Map<string, number>; liveSeenAtMs: number } | undefined;
  for (let attempt = 1; attempt <= attemptsMax && hit === undefined; attempt += 1) {
    const sender = `${world.name}-s2-${attempt}`;
    const packet = await sendPaid(world, sender, 100, '100.00');
    // `never`: the order is paid, the provider's notification is ours to send, at the moment we choose.
    await forwardReturn(world, packet, sender, await payInSandbox(world, packet, 'never'));
    const claims = await openAll(world, packet, users(`${world.name}-n${attempt}`, openers));
    await world.waitBooked(packet.packetId, openers);
    expect(await packetStatus(world, packet, sender)).toBe('awaiting_funds');

    await world.holdLedger?.();
    const { body, headers } = signedNotification(world, packet);
    const response = await fetch(`${world.engineUrl()}/v1/payments/sandbox/notify`, { method: 'POST', headers, body, signal: AbortSignal.timeout(30_000) });
    // The funding is durable (a 200 is only ever said once it is): kill -9 the moment the answer arrives.
    await world.crash();
    expect(response.status).toBe(200);
    // Its body was on the wire already (a killed process's socket is closed, not reset, after it).
    const answer = await response.text().catch(() => undefined);
    if (answer !== undefined) expect(JSON.parse(answer)).toEqual({ code: 'SUCCESS' });

    const atKill = await world.inspect((state) => packetState(state, packet.packetId));
    // The log holds the funding in every case: the 200 said it was durable.
    expect(atKill.paymentChanges).toEqual(['awaiting_funds', 'funded']);
    expect(atKill.claims).toBe(openers);
    expect(atKill.heldClaimEvents).toBe(openers);
    if (atKill.creditedClaims === 0) {
      // The window: funded in the log, nothing of it in the ledger.
      expect(atKill).toMatchObject({ status: 'awaiting_funds', orderStatus: 'created', claimTransfers: 0, fundTransfers: 0 });
      found.push('funded in the log, no claim credited');
      hit = { packet, sender, claims, liveSeenAtMs: 0 };
    } else {
      // The ledger won the race: it credited everything, in one transaction, before the kill.
      expect(atKill).toMatchObject({ status: 'live', orderStatus: 'paid', creditedClaims: openers, claimTransfers: openers, fundTransfers: 1 });
      found.push('already credited');
    }

    await world.restart();
    await eventually('the packet live', () => packetStatus(world, packet, sender), (status) => status === 'live');
    if (hit !== undefined) hit.liveSeenAtMs = Date.now();
    await expectCreditedOnce(world, sender, claims);
    done.push({ packet, claims });
  }
  expect(hit, `the window between the notification and the crediting was never hit: ${found.join('; ')}`).toBeDefined();
  await expectRepeatChangesNothing(world, hit!.sender, hit!.packet, hit!.claims);
  await expectSecondSweepFoundNothing(world, hit!.packet, hit!.liveSeenAtMs);
  await world.audit((state) => auditBooks(state, done));
  return { heldClaims: openers, attempts: found.length, found };
}
