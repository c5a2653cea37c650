// kill -9 in the middle of webhook delivery (API.md, Notifications: "A restart or a dead receiver
// loses no event"), shared by the embedded suite (test/integration/notification-crash.test.ts)
// and the services one (test/services/notification-crash.test.ts). The receivers run HERE, in the
// test process; the engine is the real server process (src/main.ts, NODE_ENV=production with
// WEBHOOK_ALLOW_PRIVATE=true, since the receivers are on 127.0.0.1), killed with SIGKILL and
// started again on the same data.
//
// Two endpoints get every event: one answers 500 until the restart (its deliveries wait for a
// retry on the durable schedule), the other holds every request without answering (its
// deliveries are in flight, leased, when the process dies). A scenario of four packets — three
// drained, one half opened just before the kill, so the notifier may not have read its last
// claims — then the kill; the durable state is read to prove the fault (nothing delivered,
// retries scheduled, deliveries leased); then both endpoints answer 200 and the engine restarts.
// Afterwards each endpoint has every event of the scenario at least once, exactly the expected
// set of ids, each packet's events in order (by first delivery), every request signed with its
// webhook's secret, a retried event always the same body; and the endpoint that failed is not
// held up by the other's leases.
import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { expect } from 'vitest';
import { issueToken } from '../../src/http/auth.js';
import { rowsOf, type Db } from '../../src/ledger/database.js';
import { LEASE_MS } from '../../src/notify/dispatcher.js';
import { verifyWebhook } from '../../src/notify/signature.js';
import { scriptedEndpoint, type ScriptedEndpoint } from './notification-fakes.js';
import { eventually } from './payment-crash.js';

/** Production-grade secrets: the engine runs with NODE_ENV=production. */
export const NOTIFY_CRASH_AUTH_SECRET = `notify-crash-auth-${'a'.repeat(32)}`;
export const NOTIFY_CRASH_ENV = {
  NODE_ENV: 'production',
  AUTH_SECRET: NOTIFY_CRASH_AUTH_SECRET,
  SEED_SECRET: `notify-crash-seed-${'b'.repeat(32)}`,
  // Production refuses loopback receivers unless told otherwise.
  WEBHOOK_ALLOW_PRIVATE: 'true',
  REQUESTS_BURST: '1000000',
  REQUESTS_PER_SECOND: '1000000',
  OPEN_BURST: '1000000',
  OPENS_PER_SECOND: '1000000',
};

export interface NotificationCrashWorld {
  /** Where API requests go now. */
  engineUrl(): string;
  /** kill -9 of every process of the system. */
  crash(): Promise<void>;
  /** Starts everything again on the same data. */
  restart(): Promise<void>;
  /** Reads the database while the engine is down (as crash() left it). */
  inspect<T>(read: (db: Db) => Promise<T>): Promise<T>;
}

export interface NotificationCrashReport {
  readonly expectedEvents: number;
  /** What the database held at the kill, per endpoint. */
  readonly atKill: Record<'failing' | 'holding', DeliveryCounts>;
  /** Events the notifier had stored at the kill, of the scenario's. */
  readonly storedAtKill: number;
  /** Requests each endpoint got in all (retries and redeliveries included). */
  readonly requests: Record<'failing' | 'holding', number>;
  readonly msFromRestart: Record<'failing' | 'holding', number>;
}

interface DeliveryCounts {
  readonly pending: number;
  readonly retrying: number;
  readonly leased: number;
  readonly delivered: number;
  readonly leasedUntilMaxMs: number | null;
}

const tokens = new Map<string, string>();
async function call(world: NotificationCrashWorld, method: string, path: string, user: string, body?: unknown, headers: Record<string, string> = {}) {
  if (!tokens.has(user)) tokens.set(user, await issueToken(NOTIFY_CRASH_AUTH_SECRET, user, { admin: user === 'admin', ttlSeconds: 3600 }));
  const response = await fetch(`${world.engineUrl()}${path}`, {
    method,
    headers: { authorization: `Bearer ${tokens.get(user)}`, 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: response.status, body: (await response.json()) as any };
}

interface ScenarioPacket {
  readonly id: string;
  readonly opens: { userId: string; amount: string; seq: number }[];
  readonly count: number;
}

/** The ids the contract gives this packet's events, in the order they happened. */
function expectedIds(packet: ScenarioPacket): string[] {
  const ids = [`evt_sent_${packet.id}`];
  for (const open of packet.opens) ids.push(`evt_opened_${packet.id}_${open.seq}`, `evt_credited_${packet.id}_${open.seq}`);
  if (packet.opens.length === packet.count) ids.push(`evt_finished_${packet.id}`);
  return ids;
}

async function countsOf(db: Db, webhookId: string, killedAtMs: number): Promise<DeliveryCounts> {
  const [row] = await rowsOf<{ pending: number; retrying: number; leased: number; delivered: number; leased_max: string | number | null }>(
    db,
    sql`select count(*) filter (where state = 'pending')::int as pending,
               count(*) filter (where state = 'pending' and attempts > 0)::int as retrying,
               count(*) filter (where state = 'pending' and leased_until > ${new Date(killedAtMs).toISOString()}::timestamptz)::int as leased,
               count(*) filter (where state = 'delivered')::int as delivered,
               (extract(epoch from max(leased_until)) * 1000)::bigint as leased_max
        from webhook_deliveries where webhook_id = ${webhookId}`,
  );
  return { pending: row!.pending, retrying: row!.retrying, leased: row!.leased, delivered: row!.delivered, leasedUntilMaxMs: row!.leased_max === null ? null : Number(row!.leased_max) };
}

export async function crashMidDelivery(world: NotificationCrashWorld): Promise<NotificationCrashReport> {
  const run = `nc${randomBytes(3).toString('hex')}`;
  const mode = { failing: 'fail' as 'fail' | 'ok', holding: 'hold' as 'hold' | 'ok' };
  const endpoints: Record<'failing' | 'holding', ScriptedEndpoint> = {
    failing: await scriptedEndpoint(() => ({ status: mode.failing === 'fail' ? 500 : 200 })),
    holding: await scriptedEndpoint(() => (mode.holding === 'hold' ? 'held' : { status: 200 })),
  };
  try {
    const webhooks = {} as Record<'failing' | 'holding', { id: string; secret: string }>;
    for (const name of ['failing', 'holding'] as const) {
      const created = await call(world, 'POST', '/v1/admin/webhooks', 'admin', { url: endpoints[name].url });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      webhooks[name] = { id: created.body.id, secret: created.body.secret };
    }

    const sender = `${run}-sender`;
    const deposit = await call(world, 'POST', '/v1/wallet/deposits', 'admin', { userId: sender, amount: '100.00' }, { 'idempotency-key': `${run}-deposit` });
    expect(deposit.status, JSON.stringify(deposit.body)).toBe(201);
    const send = async (name: string): Promise<ScenarioPacket> => {
      const sent = await call(world, 'POST', '/v1/packets', sender, { type: 'group_lucky', targetId: `${run}-g`, count: 4, amount: '4.00' }, { 'idempotency-key': `${run}-${name}` });
      expect(sent.status, JSON.stringify(sent.body)).toBe(201);
      return { id: sent.body.packet.id, opens: [], count: 4 };
    };
    const open = async (packet: ScenarioPacket, userId: string) => {
      const opened = await call(world, 'POST', `/v1/packets/${packet.id}/open`, userId);
      expect(opened.body.state, JSON.stringify(opened.body)).toBe('claimed');
      packet.opens.push({ userId, amount: opened.body.amount, seq: opened.body.seq });
    };

    // Three packets drained while one endpoint fails and the other holds every request.
    const packets: ScenarioPacket[] = [];
    for (let p = 0; p < 3; p += 1) {
      const packet = await send(`p${p}`);
      packets.push(packet);
      for (let i = 0; i < 4; i += 1) await open(packet, `${run}-o${p}-${i}`);
    }
    const heads = packets.map((packet) => `evt_sent_${packet.id}`);
    // Each packet's first event was tried and failed twice (a retry from the schedule), and is held in flight at the other.
    await eventually(
      'the first events failed twice at one endpoint and are held at the other',
      async () => ({
        failed: heads.map((id) => endpoints.failing.requests.filter((request) => request.eventId === id).length),
        held: heads.map((id) => endpoints.holding.requests.filter((request) => request.eventId === id && request.status === 'held').length),
      }),
      ({ failed, held }) => failed.every((count) => count >= 2) && held.every((count) => count >= 1),
      20_000,
    );
    // A fourth packet, half opened right before the kill: the notifier may not have read those claims yet.
    const last = await send('p3');
    packets.push(last);
    // Its first event tried (failed, held) first, so the failing endpoint has no attempt of it in flight at the kill.
    await eventually(
      'the fourth packet\'s first event tried at both endpoints',
      async () => (['failing', 'holding'] as const).map((name) => endpoints[name].requests.some((request) => request.eventId === `evt_sent_${last.id}`)),
      (tried) => tried.every(Boolean),
      10_000,
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    await open(last, `${run}-o3-0`);
    await open(last, `${run}-o3-1`);
    const killedAtMs = Date.now();
    await world.crash();

    const expected = new Map(packets.map((packet) => [packet.id, expectedIds(packet)]));
    const expectedSet = new Set([...expected.values()].flat());
    // The receivers had nothing delivered: every request so far was answered 500 or is still held.
    for (const name of ['failing', 'holding'] as const) {
      expect(endpoints[name].requests.filter((request) => request.status === 200), name).toEqual([]);
      for (const request of endpoints[name].requests) expect(expectedSet.has(request.eventId), request.eventId).toBe(true);
    }
    // The durable state proves it: retries on the schedule at one, deliveries leased (in flight) at the other.
    const { atKill, storedAtKill } = await world.inspect(async (db) => {
      const stored = await rowsOf<{ count: number }>(
        db,
        sql`select count(*)::int as count from notification_events where packet_id in (${sql.join(packets.map((packet) => sql`${packet.id}`), sql`, `)})`,
      );
      return {
        atKill: { failing: await countsOf(db, webhooks.failing.id, killedAtMs), holding: await countsOf(db, webhooks.holding.id, killedAtMs) },
        storedAtKill: stored[0]!.count,
      };
    });
    for (const name of ['failing', 'holding'] as const) {
      expect(atKill[name].delivered, name).toBe(0);
      expect(atKill[name].pending, name).toBeGreaterThanOrEqual(3);
    }
    expect(atKill.failing.retrying).toBeGreaterThanOrEqual(3);
    // Every request the holding endpoint holds is a leased delivery (more may be leased, their requests on the way).
    expect(atKill.holding.leased).toBeGreaterThanOrEqual(endpoints.holding.requests.filter((request) => request.status === 'held').length);
    expect(atKill.holding.leased).toBeGreaterThanOrEqual(3);

    mode.failing = 'ok';
    mode.holding = 'ok';
    await world.restart();
    const restartedAtMs = Date.now();

    const delivered = (name: 'failing' | 'holding') => new Set(endpoints[name].requests.filter((request) => request.status === 200).map((request) => request.eventId));
    const doneAtMs = {} as Record<'failing' | 'holding', number>;
    await Promise.all(
      (['failing', 'holding'] as const).map(async (name) => {
        await eventually(
          `every event delivered to the ${name} endpoint`,
          async () => [...expectedSet].filter((id) => !delivered(name).has(id)),
          (missing) => missing.length === 0,
          LEASE_MS + 30_000,
        );
        doneAtMs[name] = Date.now();
      }),
    );

    for (const name of ['failing', 'holding'] as const) {
      const { requests } = endpoints[name];
      const { secret } = webhooks[name];
      // Exactly the scenario's events: nothing missing, nothing else.
      expect(delivered(name), name).toEqual(expectedSet);
      expect(new Set(requests.map((request) => request.eventId)), name).toEqual(expectedSet);
      // Each packet's events in order, by first delivery.
      const firstDelivered = new Map<string, number>();
      requests.forEach((request, index) => {
        if (request.status === 200 && !firstDelivered.has(request.eventId)) firstDelivered.set(request.eventId, index);
      });
      for (const [packetId, ids] of expected) {
        expect([...ids].sort((a, b) => firstDelivered.get(a)! - firstDelivered.get(b)!), `${name} ${packetId}`).toEqual(ids);
      }
      // Signed with this webhook's secret (and not the other's); a retried event is the same body every time.
      const other = webhooks[name === 'failing' ? 'holding' : 'failing'].secret;
      const bodies = new Map<string, string>();
      for (const request of requests) {
        expect(verifyWebhook(secret, request.body, request.signature!, request.atMs), `${name} ${request.eventId}`).toBe(true);
        expect(verifyWebhook(other, request.body, request.signature!, request.atMs)).toBe(false);
        expect(bodies.get(request.eventId) ?? request.body).toBe(request.body);
        bodies.set(request.eventId, request.body);
      }
      // The contract's content: the opens as they were answered, the best luck of a drained packet.
      for (const packet of packets) {
        for (const opened of packet.opens) {
          const event = JSON.parse(bodies.get(`evt_opened_${packet.id}_${opened.seq}`)!);
          expect(event).toMatchObject({ type: 'packet.opened', data: { packetId: packet.id, senderId: sender, userId: opened.userId, amount: opened.amount, seq: opened.seq } });
          const credited = JSON.parse(bodies.get(`evt_credited_${packet.id}_${opened.seq}`)!);
          expect(credited).toMatchObject({ type: 'wallet.credited', data: { userId: opened.userId, amount: opened.amount } });
        }
        if (packet.opens.length === packet.count) {
          const best = [...packet.opens].sort((a, b) => Number(b.amount) - Number(a.amount) || a.seq - b.seq)[0]!;
          const finished = JSON.parse(bodies.get(`evt_finished_${packet.id}`)!);
          expect(finished).toMatchObject({ type: 'packet.finished', data: { count: 4, total: '4.00', bestLuck: best } });
        }
      }
    }
    // The endpoint that only failed was not held up by the other's leases (one endpoint never delays
    // another) — unless an attempt of its own happened to be in flight at the kill, leased too.
    if (atKill.failing.leased === 0) expect(doneAtMs.failing).toBeLessThan(atKill.holding.leasedUntilMaxMs!);
    return {
      expectedEvents: expectedSet.size,
      atKill,
      storedAtKill,
      requests: { failing: endpoints.failing.requests.length, holding: endpoints.holding.requests.length },
      msFromRestart: { failing: doneAtMs.failing - restartedAtMs, holding: doneAtMs.holding - restartedAtMs },
    };
  } finally {
    await endpoints.failing.close();
    await endpoints.holding.close();
  }
}
