// Webhook delivery's schedule and its fairness (src/notify/dispatcher.ts; API.md, Notifications:
// "anything but a 2xx is retried with exponential backoff (the first retry within a few seconds,
// gaps capped at one hour) for at least 24 hours"). retryDelayMs by itself; then a Dispatcher over
// an in-memory store (test/support/notification-fakes.ts) sending to real local endpoints: a
// failing endpoint is retried with the same event and a valid signature until it answers 2xx; a
// timeout is a failure; a slow endpoint holds only its own share; a failing delivery is retried
// for 24 hours of the dispatcher's clock, with gaps as retryDelayMs says, then marked dead.
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/engine/clock.js';
import { Dispatcher, FIRST_RETRY_MS, IN_FLIGHT_PER_WEBHOOK_MAX, RETRY_GAP_MAX_MS, RETRY_HORIZON_MS, retryDelayMs } from '../../src/notify/dispatcher.js';
import { verifyWebhook } from '../../src/notify/signature.js';
import { FakeNotificationStore, scriptedEndpoint, until, type ScriptedEndpoint } from '../support/notification-fakes.js';
import { silentLogger } from '../support/harness.js';

const HOUR = 3600_000;

/** The gap before attempt n+1 without jitter: doubling from 1 s, capped at an hour. */
const gapOf = (attempts: number) => Math.min(HOUR, 1000 * 2 ** Math.max(0, attempts - 1));

describe('retryDelayMs', () => {
  it('doubles from one second, capped at an hour', () => {
    expect(FIRST_RETRY_MS).toBe(1000);
    expect(RETRY_GAP_MAX_MS).toBe(HOUR);
    // The largest jitter factor (random → 1) is the whole gap.
    const top = (attempts: number) => retryDelayMs(attempts, () => 1);
    expect([1, 2, 3, 4, 5, 6, 10, 12].map(top)).toEqual([1000, 2000, 4000, 8000, 16000, 32000, 512000, 2048000]);
    expect(top(13)).toBe(HOUR); // 4096 s capped
    expect(top(40)).toBe(HOUR);
    expect(top(2000)).toBe(HOUR); // no overflow to Infinity or NaN
    expect(top(0)).toBe(1000);
  });

  it('jitters each gap within [½, 1] of it', () => {
    expect(retryDelayMs(1, () => 0)).toBe(500);
    expect(retryDelayMs(5, () => 0)).toBe(8000);
    expect(retryDelayMs(30, () => 0)).toBe(HOUR / 2);
    expect(retryDelayMs(3, () => 0.5)).toBe(3000);
    for (let attempts = 1; attempts <= 30; attempts += 1) {
      const seen = new Set<number>();
      for (let i = 0; i < 200; i += 1) {
        const delay = retryDelayMs(attempts);
        expect(delay).toBeGreaterThanOrEqual(gapOf(attempts) / 2);
        expect(delay).toBeLessThanOrEqual(gapOf(attempts));
        seen.add(delay);
      }
      // Jittered: not one fixed value (receivers coming back are not hit by every sender at once).
      expect(seen.size).toBeGreaterThan(20);
    }
  });

  it('retries for at least 24 hours within the 25 h horizon even with the shortest gaps', () => {
    // Attempt times with every gap at its shortest: the horizon is what ends the retries, not a count.
    let atMs = 0;
    let attempts = 1;
    while (atMs + retryDelayMs(attempts, () => 0) <= RETRY_HORIZON_MS) atMs += retryDelayMs(attempts++, () => 0);
    expect(atMs).toBeGreaterThanOrEqual(24 * HOUR);
    expect(RETRY_HORIZON_MS).toBe(25 * HOUR);
  });
});

const running: Dispatcher[] = [];
const endpoints: ScriptedEndpoint[] = [];
afterEach(async () => {
  for (const dispatcher of running.splice(0)) await dispatcher.stop();
  for (const endpoint of endpoints.splice(0)) await endpoint.close();
});

function dispatcherOn(store: FakeNotificationStore, options: Partial<ConstructorParameters<typeof Dispatcher>[0]> = {}) {
  const counted = { delivered: 0, failed: 0, dead: 0 };
  const dispatcher = new Dispatcher({
    store,
    clock: { now: () => Date.now() },
    logger: silentLogger,
    allowPrivate: true,
    pollMs: 5,
    metrics: { delivered: () => void counted.delivered++, failed: () => void counted.failed++, dead: () => void counted.dead++ },
    ...options,
  });
  running.push(dispatcher);
  dispatcher.start();
  return { dispatcher, counted };
}

async function endpoint(answer: Parameters<typeof scriptedEndpoint>[0]) {
  const made = await scriptedEndpoint(answer);
  endpoints.push(made);
  return made;
}

describe('Dispatcher', () => {
  it('retries a failing endpoint with the same event and a valid signature until it answers 2xx, then stops', async () => {
    const store = new FakeNotificationStore();
    const target = await endpoint((index) => ({ status: index < 2 ? 500 : index === 2 ? 503 : 204 }));
    store.addWebhook('wh1', target.url);
    const delivery = store.schedule('wh1', 'pk1', Date.now());
    const { counted } = dispatcherOn(store, { retryDelayMs: () => 40 });
    await until('delivered', () => delivery.state === 'delivered');
    await new Promise((resolve) => setTimeout(resolve, 150));
    // Three failures (500, 500, 503), then the 204: four requests and no fifth.
    expect(target.requests.map((request) => request.status)).toEqual([500, 500, 503, 204]);
    expect(new Set(target.requests.map((request) => request.eventId))).toEqual(new Set([delivery.eventId]));
    expect(new Set(target.requests.map((request) => request.body)).size).toBe(1);
    for (const request of target.requests) expect(verifyWebhook('whsec_wh1', request.body, request.signature!, Date.now())).toBe(true);
    expect(verifyWebhook('whsec_other', target.requests[0]!.body, target.requests[0]!.signature!, Date.now())).toBe(false);
    expect(delivery.completions.map((completion) => completion.outcome.kind)).toEqual(['retry', 'retry', 'retry', 'delivered']);
    const [first] = delivery.completions;
    expect(first!.outcome).toMatchObject({ kind: 'retry', status: 500, error: 'answered 500' });
    // Scheduled at the gap the retry delay gave: 40 ms after the failure (outcomes are recorded a few ms later, together).
    const nextAt = (first!.outcome as { nextAttemptAtMs: number }).nextAttemptAtMs;
    expect(nextAt).toBeLessThanOrEqual(first!.atMs + 40);
    expect(nextAt).toBeGreaterThanOrEqual(first!.atMs + 40 - 25);
    // Each retry waited for its time.
    for (let i = 1; i < target.requests.length; i += 1) expect(target.requests[i]!.atMs - target.requests[i - 1]!.atMs).toBeGreaterThanOrEqual(35);
    expect(counted).toEqual({ delivered: 1, failed: 3, dead: 0 });
  });

  it('counts no answer within the timeout, and a refused connection, as failures to retry', async () => {
    const store = new FakeNotificationStore();
    const silent = await endpoint(() => 'held');
    store.addWebhook('silent', silent.url);
    store.addWebhook('closed', 'http://127.0.0.1:1/hook');
    const held = store.schedule('silent', 'pk1', Date.now());
    const refused = store.schedule('closed', 'pk2', Date.now());
    const started = Date.now();
    dispatcherOn(store, { timeoutMs: 300, retryDelayMs: () => 60_000 });
    await until('both attempted', () => held.completions.length === 1 && refused.completions.length === 1, 5_000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(held.completions[0]!.outcome).toMatchObject({ kind: 'retry', status: null });
    expect(refused.completions[0]!.outcome).toMatchObject({ kind: 'retry', status: null });
    expect(held.state).toBe('pending');
    expect(silent.requests).toHaveLength(1);
  });

  it('a slow endpoint holds only its own share: another endpoint gets all its deliveries meanwhile', async () => {
    const store = new FakeNotificationStore();
    const slow = await endpoint(() => ({ status: 200, delayMs: 1_000 }));
    const fast = await endpoint(() => ({ status: 200 }));
    store.addWebhook('slow', slow.url);
    store.addWebhook('fast', fast.url);
    const now = Date.now();
    // The slow endpoint's deliveries first in the schedule, one packet each (nothing orders them).
    for (let i = 0; i < 2 * IN_FLIGHT_PER_WEBHOOK_MAX; i += 1) store.schedule('slow', `slow-${i}`, now);
    for (let i = 0; i < 30; i += 1) store.schedule('fast', `fast-${i}`, now);
    const started = Date.now();
    dispatcherOn(store);
    await until('the fast endpoint got every delivery', () => store.of('fast').every((delivery) => delivery.state === 'delivered'), 5_000);
    const tookMs = Date.now() - started;
    expect(tookMs).toBeLessThan(900);
    expect(fast.requests).toHaveLength(30);
    // Meanwhile the slow one had answered nothing yet, and never held more than the per-endpoint bound.
    expect(store.of('slow').filter((delivery) => delivery.state === 'delivered')).toHaveLength(0);
    expect(slow.inFlight).toBeGreaterThan(0);
    expect(slow.maxInFlight).toBeLessThanOrEqual(IN_FLIGHT_PER_WEBHOOK_MAX);
    await until('the slow endpoint got every delivery too', () => store.of('slow').every((delivery) => delivery.state === 'delivered'), 15_000);
    expect(slow.maxInFlight).toBe(IN_FLIGHT_PER_WEBHOOK_MAX);
  });

  it('keeps one packet\'s deliveries in order: the next is not sent before the earlier one is delivered', async () => {
    const store = new FakeNotificationStore();
    const target = await endpoint((index) => ({ status: index % 2 === 0 ? 500 : 200 }));
    store.addWebhook('wh', target.url);
    const now = Date.now();
    const scheduled = [1, 2, 3, 4].map(() => store.schedule('wh', 'pk-ordered', now));
    dispatcherOn(store, { retryDelayMs: () => 20 });
    await until('all delivered', () => scheduled.every((delivery) => delivery.state === 'delivered'));
    // Each event failed once, then was delivered, before the next one was sent at all.
    expect(target.requests.map((request) => `${request.eventId}:${request.status}`)).toEqual(
      scheduled.flatMap((delivery) => [`${delivery.eventId}:500`, `${delivery.eventId}:200`]),
    );
  });

  it('with private addresses not allowed, never connects to a literal private address (registered while they were allowed)', async () => {
    const store = new FakeNotificationStore();
    const target = await endpoint(() => ({ status: 200 }));
    store.addWebhook('v4', target.url);
    store.addWebhook('v6', target.url.replace('127.0.0.1', '[::ffff:127.0.0.1]'));
    const deliveries = [store.schedule('v4', 'pk1', Date.now()), store.schedule('v6', 'pk2', Date.now())];
    dispatcherOn(store, { allowPrivate: false, retryDelayMs: () => 60_000 });
    await until('attempted', () => deliveries.every((delivery) => delivery.completions.length === 1));
    for (const delivery of deliveries) {
      expect(delivery.completions[0]!.outcome).toMatchObject({ kind: 'retry', status: null, error: expect.stringMatching(/public address/) });
    }
    expect(target.requests).toHaveLength(0);
  });

  it('with private addresses not allowed, never connects to a name that resolves to one', async () => {
    const store = new FakeNotificationStore();
    const target = await endpoint(() => ({ status: 200 }));
    store.addWebhook('rebound', target.url.replace('127.0.0.1', 'localhost'));
    const delivery = store.schedule('rebound', 'pk1', Date.now());
    dispatcherOn(store, { allowPrivate: false, retryDelayMs: () => 60_000 });
    await until('attempted', () => delivery.completions.length === 1);
    expect(delivery.completions[0]!.outcome).toMatchObject({ kind: 'retry', status: null, error: expect.stringMatching(/private/) });
    expect(target.requests).toHaveLength(0);
  });

  it('retries a failing delivery for 24 hours of its clock, each gap as retryDelayMs says, then marks it dead', async () => {
    const T0 = Date.UTC(2026, 1, 17, 4, 0, 0);
    const clock = new ManualClock(T0);
    const store = new FakeNotificationStore();
    const target = await endpoint(() => ({ status: 500 }));
    store.addWebhook('down', target.url);
    const delivery = store.schedule('down', 'pk1', T0);
    const { counted } = dispatcherOn(store, { clock });
    // Each time the attempt is recorded, move the clock to the retry it scheduled.
    while (delivery.state === 'pending') {
      const done = delivery.completions.length;
      await until(`attempt ${done + 1}`, () => delivery.completions.length > done);
      if (delivery.state !== 'pending') break;
      clock.advance(delivery.nextAttemptAtMs - clock.now());
    }
    expect(delivery.state).toBe('dead');
    const times = delivery.completions.map((completion) => completion.atMs);
    expect(times[0]).toBe(T0);
    // The first retry within a few seconds; each gap within [½, 1] of its doubling, capped at an hour.
    expect(times[1]! - times[0]!).toBeLessThanOrEqual(1000);
    for (let i = 1; i < times.length; i += 1) {
      const gap = times[i]! - times[i - 1]!;
      expect(gap).toBeGreaterThanOrEqual(gapOf(i) / 2);
      expect(gap).toBeLessThanOrEqual(gapOf(i));
    }
    // Retried for at least 24 hours, never past the horizon.
    const last = times[times.length - 1]!;
    expect(last - T0).toBeGreaterThanOrEqual(24 * HOUR);
    expect(last - T0).toBeLessThanOrEqual(RETRY_HORIZON_MS);
    expect(delivery.completions.at(-1)!.outcome).toMatchObject({ kind: 'dead', status: 500 });
    expect(target.requests).toHaveLength(times.length);
    expect(counted).toEqual({ delivered: 0, failed: times.length - 1, dead: 1 });
    // Dead is final: time moves on, nothing more is sent.
    clock.advance(10 * HOUR);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(target.requests).toHaveLength(times.length);
  });

  it('gives up at once on a delivery whose next gap would pass the horizon, not on one still within it', async () => {
    const nowMs = Date.UTC(2026, 1, 18, 5, 0, 0);
    const clock = new ManualClock(nowMs);
    const store = new FakeNotificationStore();
    const target = await endpoint(() => ({ status: 502 }));
    store.addWebhook('wh', target.url);
    const past = store.schedule('wh', 'old', nowMs - RETRY_HORIZON_MS);
    const within = store.schedule('wh', 'young', nowMs - RETRY_HORIZON_MS + 1000);
    dispatcherOn(store, { clock, retryDelayMs: () => 999 });
    await until('both attempted', () => past.completions.length === 1 && within.completions.length === 1);
    expect(past.completions[0]!.outcome).toMatchObject({ kind: 'dead', status: 502, error: 'answered 502' });
    expect(within.completions[0]!.outcome).toEqual({ kind: 'retry', status: 502, error: 'answered 502', nextAttemptAtMs: nowMs + 999 });
    expect(past.state).toBe('dead');
    expect(within.state).toBe('pending');
  });
});
