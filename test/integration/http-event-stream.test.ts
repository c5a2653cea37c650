// The live event stream (API.md, Notifications: GET /v1/me/events) over a real listening server,
// read with a streamed fetch: each user gets the events that concern them as id:/event:/data:
// frames whose data is the webhook's {id, type, createdAt, data}; a client cut off mid-scenario
// (even in the middle of a burst it had not finished reading) resumes with Last-Event-ID and gets
// exactly the events after that id — compared with a fresh stream from the first event and with
// what the webhook receiver got; an idle stream gets keep-alive comments; the bounds (5 streams
// per user, one process's total) answer 429 and free up when a stream closes; an unknown or
// foreign Last-Event-ID is 400; no token is 401.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventStreams } from '../../src/app/event-streams.js';
import { startHarness, type Harness } from '../support/harness.js';
import { apiClient, expectError } from '../support/http-client.js';
import { FakeNotificationStore } from '../support/notification-fakes.js';
import { mustOpen, openEventStream, serveHarness, type EventStreamClient, type StreamedFrame } from '../support/notification-sse.js';
import { startReceiver, type Receiver } from '../support/webhook-receiver.js';

const KEEP_ALIVE_MS = 250;
let h: Harness;
let server: { url: string; close(): Promise<void> };
let receiver: Receiver;
const api = apiClient(() => h, 'sse');
const run = `s${Date.now().toString(36)}`;
const user = (name: string) => `${run}-${name}`;
const opened: EventStreamClient[] = [];

beforeAll(async () => {
  h = await startHarness({ runJobs: true, webhookRetryDelayMs: () => 100 });
  server = await serveHarness(h, { keepAliveMs: KEEP_ALIVE_MS });
  receiver = await startReceiver();
  const created = await h.call('POST', '/v1/admin/webhooks', { user: 'ops', admin: true, body: { url: receiver.url } });
  expect(created.status).toBe(201);
});
afterAll(async () => {
  for (const stream of opened) stream.close();
  await server?.close();
  await h?.stop();
  await receiver?.close();
});

async function stream(userId: string, options: { lastEventId?: string; viaQuery?: boolean } = {}): Promise<EventStreamClient> {
  const opening = await mustOpen(server.url, await h.token(userId), options);
  opened.push(opening);
  return opening;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const ids = (frames: readonly StreamedFrame[]) => frames.map((frame) => frame.id);

/** Every frame is one event as the contract says: id: and event: repeat the data's id and type. */
function expectWellFormed(frames: readonly StreamedFrame[]): void {
  for (const frame of frames) {
    expect(Object.keys(frame.body).sort()).toEqual(['createdAt', 'data', 'id', 'type']);
    expect(frame.id).toBe(frame.body.id);
    expect(frame.event).toBe(frame.body.type);
    expect(new Date(frame.body.createdAt).toISOString()).toBe(frame.body.createdAt);
  }
}

/** Nothing more arrives for a while (two keep-alive periods): no duplicate, nothing extra. */
async function expectQuiet(client: EventStreamClient, count: number): Promise<void> {
  await sleep(2 * KEEP_ALIVE_MS + 100);
  expect(ids(client.frames)).toHaveLength(count);
}

describe('GET /v1/me/events', () => {
  it('streams each user their events; a client cut off mid-scenario resumes with Last-Event-ID with no gap and no duplicate', async () => {
    const [alice, bob, carol, dave, erin] = ['alice', 'bob', 'carol', 'dave', 'erin'].map(user) as [string, string, string, string, string];
    const aliceFirst = await stream(alice);
    const bobs = await stream(bob);
    expect(aliceFirst.status).toBe(200);
    expect(aliceFirst.headers.get('content-type')).toMatch(/^text\/event-stream/);
    await api.fund(alice, '20.00');
    const packet = await api.sendOk(alice, { type: 'group_lucky', targetId: 'g', count: 4, amount: '4.00' });
    const b = await api.openOk(packet.id, bob);
    const head = await aliceFirst.waitFrames(2);
    expect(ids(head)).toEqual([`evt_sent_${packet.id}`, `evt_opened_${packet.id}_1`]);
    expect(head[1]!.body.data).toEqual({ packetId: packet.id, senderId: alice, userId: bob, amount: b.amount, seq: 1, credited: true });
    // The phone loses its connection; the scenario goes on without it.
    aliceFirst.close();
    const lastSeen = head[1]!.id!;
    const c = await api.openOk(packet.id, carol);
    const d = await api.openOk(packet.id, dave);
    const e = await api.openOk(packet.id, erin);
    const personal = await api.sendOk(alice, { type: 'personal', targetId: bob, count: 1, amount: '1.25' });
    const b2 = await api.openOk(personal.id, bob);

    const resumed = await stream(alice, { lastEventId: lastSeen });
    const rest = await resumed.waitFrames(7);
    await expectQuiet(resumed, 7);
    expectWellFormed([...head, ...rest]);
    // Exactly the events after the last one seen: the rest of the first packet in order, the second packet's in order.
    const ofPacket = (id: string) => rest.filter((frame) => frame.body.data.packetId === id).map((frame) => frame.id);
    expect(ofPacket(packet.id)).toEqual([`evt_opened_${packet.id}_2`, `evt_opened_${packet.id}_3`, `evt_opened_${packet.id}_4`, `evt_finished_${packet.id}`]);
    expect(ofPacket(personal.id)).toEqual([`evt_sent_${personal.id}`, `evt_opened_${personal.id}_1`, `evt_finished_${personal.id}`]);
    expect(rest.filter((frame) => frame.body.data.packetId === packet.id && frame.event === 'packet.opened').map((frame) => frame.body.data)).toEqual(
      [c, d, e].map((open, i) => ({ packetId: packet.id, senderId: alice, userId: [carol, dave, erin][i], amount: open.amount, seq: i + 2, credited: true })),
    );
    const finished = rest.find((frame) => frame.id === `evt_finished_${packet.id}`)!;
    expect(finished.event).toBe('packet.finished');
    const amounts = [b, c, d, e].map((open, i) => ({ userId: [bob, carol, dave, erin][i], amount: open.amount, seq: i + 1 }));
    const best = [...amounts].sort((x, y) => Number(y.amount) - Number(x.amount) || x.seq - y.seq)[0]!;
    expect(finished.body.data).toMatchObject({ packetId: packet.id, senderId: alice, count: 4, total: '4.00', bestLuck: best });

    // A fresh stream from the first event gets the same list the resumed client ended up with.
    const fresh = await stream(alice, { lastEventId: head[0]!.id! });
    const all = await fresh.waitFrames(8);
    await expectQuiet(fresh, 8);
    expect(ids(all)).toEqual([head[1]!.id, ...ids(rest)]);
    expect(all.map((frame) => frame.body)).toEqual([head[1]!.body, ...rest.map((frame) => frame.body)]);

    // The opener's stream, open all along: the money credited to them, and nothing of the sender's.
    const credits = await bobs.waitFrames(2);
    await expectQuiet(bobs, 2);
    expectWellFormed(credits);
    expect(ids(credits)).toEqual([`evt_credited_${packet.id}_1`, `evt_credited_${personal.id}_1`]);
    expect(credits.map((frame) => frame.body.data)).toEqual([
      { userId: bob, amount: b.amount, packetId: packet.id, senderId: alice, seq: 1, reason: 'claim' },
      { userId: bob, amount: b2.amount, packetId: personal.id, senderId: alice, seq: 1, reason: 'claim' },
    ]);

    // The webhook receiver got the same events with the same bodies.
    const aliceEvents = [...head, ...rest];
    const hooked = new Map<string, unknown>();
    const wanted = new Set(ids([...aliceEvents, ...credits]));
    const deadline = Date.now() + 15_000;
    while (hooked.size < wanted.size && Date.now() < deadline) {
      for (const entry of receiver.received) if (entry.answered === 200 && wanted.has(entry.event.id)) hooked.set(entry.event.id, entry.event);
      await sleep(50);
    }
    for (const frame of [...aliceEvents, ...credits]) expect(hooked.get(frame.id!), frame.id).toEqual(frame.body);
  });

  it('a client cut off in the middle of a burst it had not finished reading resumes exactly after the last event it read', async () => {
    const sender = user('burst');
    await api.fund(sender, '50.00');
    const client = await stream(sender);
    const packet = await api.sendOk(sender, { type: 'group_fixed', targetId: 'g', count: 12, amount: '0.50' });
    await Promise.all(Array.from({ length: 12 }, (_, i) => api.openOk(packet.id, user(`burst-${i}`))));
    // More than five have come in; the client has read five when the connection drops.
    const firstFive = (await client.waitFrames(6)).slice(0, 5);
    client.close();
    const resumed = await stream(sender, { lastEventId: firstFive[4]!.id! });
    // 1 sent + 12 opened + 1 finished in all.
    const rest = await resumed.waitFrames(14 - 5);
    await expectQuiet(resumed, 14 - 5);
    const combined = [...ids(firstFive), ...ids(rest)];
    expect(new Set(combined).size).toBe(14);
    expect(combined[0]).toBe(`evt_sent_${packet.id}`);
    expect(combined.at(-1)).toBe(`evt_finished_${packet.id}`);
    expect(combined.filter((id) => id!.startsWith('evt_opened_')).sort()).toEqual(
      Array.from({ length: 12 }, (_, i) => `evt_opened_${packet.id}_${i + 1}`).sort(),
    );
    // The same as reading it all in one go.
    const whole = await stream(sender, { lastEventId: combined[0]! });
    expect(ids(await whole.waitFrames(13))).toEqual(combined.slice(1));
    // Last-Event-ID may come as ?lastEventId= too (an EventSource cannot set headers on the first connect).
    const viaQuery = await stream(sender, { lastEventId: combined[10]!, viaQuery: true });
    expect(ids(await viaQuery.waitFrames(3))).toEqual(combined.slice(11));
    for (const open of [whole, viaQuery]) open.close();
  });

  it('a stream opened without Last-Event-ID starts after what the user already has', async () => {
    const sender = user('late');
    await api.fund(sender, '5.00');
    const before = await api.sendOk(sender, { type: 'group_fixed', targetId: 'g', count: 1, amount: '1.00' });
    // Wait until the packet.sent of `before` is stored (a stream from the start shows it).
    const probe = await stream(sender, { lastEventId: `evt_sent_${before.id}` });
    probe.close();
    const client = await stream(sender);
    await api.openOk(before.id, user('late-opener'));
    const frames = await client.waitFrames(2);
    await expectQuiet(client, 2);
    expect(ids(frames)).toEqual([`evt_opened_${before.id}_1`, `evt_finished_${before.id}`]);
    client.close();
  });

  it('sends keep-alive comments on an idle stream', async () => {
    const idle = await stream(user('idle'));
    await sleep(4 * KEEP_ALIVE_MS + 150);
    idle.close();
    expect(idle.frames).toEqual([]);
    expect(idle.comments[0]!.text).toBe('connected');
    const keepAlives = idle.comments.filter((comment) => comment.text === 'keep-alive');
    expect(keepAlives.length).toBeGreaterThanOrEqual(3);
    expect(keepAlives.length).toBeLessThanOrEqual(5);
    for (let i = 1; i < keepAlives.length; i += 1) expect(keepAlives[i]!.atMs - keepAlives[i - 1]!.atMs).toBeGreaterThanOrEqual(KEEP_ALIVE_MS - 60);
    // Comments only: every line of the stream so far is a comment or blank.
    expect(idle.raw().split('\n').every((line) => line === '' || line.startsWith(':'))).toBe(true);
  });

  it('refuses a sixth stream of one user with 429 while five are open, and allows it once one closes', async () => {
    const crowded = user('crowded');
    const token = await h.token(crowded);
    const five = await Promise.all(Array.from({ length: 5 }, () => stream(crowded)));
    const sixth = await openEventStream(server.url, token);
    expect(sixth.kind).toBe('refused');
    if (sixth.kind !== 'refused') return;
    expectError({ status: sixth.status, body: sixth.body }, 429, 'rate_limited');
    expect(sixth.body.error.message).toMatch(/5 event streams per user/);
    // Another user is not affected.
    const other = await stream(user('uncrowded'));
    other.close();
    // Every one of the five still works.
    await api.fund(crowded, '1.00');
    const packet = await api.sendOk(crowded, { type: 'group_fixed', targetId: 'g', count: 1, amount: '1.00' });
    for (const open of five) expect(ids(await open.waitFrames(1))).toEqual([`evt_sent_${packet.id}`]);
    five[2]!.close();
    // The server notices the closed connection; then a stream is allowed again (and only one).
    let again: EventStreamClient | undefined;
    const deadline = Date.now() + 5_000;
    while (again === undefined) {
      const attempt = await openEventStream(server.url, token);
      if (attempt.kind === 'stream') again = attempt.stream;
      else if (Date.now() > deadline) throw new Error(`still refused: ${JSON.stringify(attempt.body)}`);
      else await sleep(50);
    }
    opened.push(again);
    const seventh = await openEventStream(server.url, token);
    expect(seventh.kind === 'refused' && seventh.status).toBe(429);
    for (const open of [...five, again]) open.close();
  });

  it('refuses an unknown, a foreign or a malformed Last-Event-ID with 400, and no or a bad token with 401', async () => {
    const owner = user('owner');
    await api.fund(owner, '1.00');
    const packet = await api.sendOk(owner, { type: 'group_fixed', targetId: 'g', count: 1, amount: '1.00' });
    const mine = await stream(owner, { lastEventId: `evt_sent_${packet.id}` });
    mine.close();
    const token = await h.token(user('stranger'));
    for (const lastEventId of ['evt_nope', `evt_sent_${packet.id}`, 'x'.repeat(201)]) {
      const refused = await openEventStream(server.url, token, { lastEventId });
      expect(refused.kind, lastEventId).toBe('refused');
      if (refused.kind === 'refused') expectError({ status: refused.status, body: refused.body }, 400, 'invalid_request');
    }
    const unknownQuery = await openEventStream(server.url, token, { lastEventId: 'evt_nope', viaQuery: true });
    expect(unknownQuery.kind === 'refused' && unknownQuery.status).toBe(400);
    for (const bad of [undefined, 'not-a-token']) {
      const refused = await openEventStream(server.url, bad);
      expect(refused.kind).toBe('refused');
      if (refused.kind === 'refused') expectError({ status: refused.status, body: refused.body }, 401, 'unauthorized');
    }
  });
});

describe('EventStreams bounds', () => {
  it('refuses past the per-process bound, whoever asks, until a stream closes', async () => {
    const streams = new EventStreams(new FakeNotificationStore(), { perUser: 5, total: 3 });
    const opening = await Promise.all(['u1', 'u2', 'u3'].map((userId) => streams.openStream(userId, undefined)));
    expect(opening.map((entry) => entry.kind)).toEqual(['opened', 'opened', 'opened']);
    expect(streams.count).toBe(3);
    const refused = await streams.openStream('u4', undefined);
    expect(refused).toEqual({ kind: 'too_many', reason: 'this process serves at most 3 event streams' });
    const first = opening[0]!;
    if (first.kind === 'opened') first.stream.close();
    first.kind === 'opened' && first.stream.close(); // closing twice frees one place, not two
    expect(streams.count).toBe(2);
    expect((await streams.openStream('u4', undefined)).kind).toBe('opened');
    expect((await streams.openStream('u5', undefined)).kind).toBe('too_many');
  });
});
