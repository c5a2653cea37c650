// Redis in front of the engine: a finished packet is answered from the cache without waking
// its actor; a flushed cache changes no answer and no money; with Redis unreachable the engine
// still answers every open from memory and the rate limits (open, request) fall back to the process's buckets;
// the request bucket is shared through Redis by every process; every key the product writes to Redis has a lifetime.
import { afterEach, describe, expect, it } from 'vitest';
import { createRedis } from '../../src/cache/redis-client.js';
import { RedisRateLimiter } from '../../src/cache/redis-rate-limit.js';
import { TokenBucketLimiter } from '../../src/engine/rate-limit.js';
import { apiClient } from '../support/http-client.js';
import { startHarness, type Harness } from '../support/harness.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
let h: Harness | undefined;
afterEach(async () => {
  await h?.stop();
  h = undefined;
});

describe('Redis packet cache and rate limit', () => {
  it('answers a finished packet from the cache after its actor is gone, and a flush changes nothing', async () => {
    const redis = createRedis(REDIS_URL, () => {});
    await redis.connect();
    try {
      h = await startHarness({ redisUrl: REDIS_URL });
      const client = apiClient(() => h!, 'cache');
      await client.fund('cache-sender', '10.00');
      const packet = await client.sendOk('cache-sender', { type: 'group_fixed', targetId: 'g', count: 2, amount: '1.00' });
      const first = await client.openOk(packet.id, 'cache-a');
      await client.openOk(packet.id, 'cache-b');
      await h.settle();
      await new Promise((resolve) => setTimeout(resolve, 50)); // cache writes are fire-and-forget
      expect(h.hongbao.engine.evictIdle(0)).toBeGreaterThan(0);

      expect((await client.open(packet.id, 'cache-c')).body).toEqual({ state: 'sold_out' });
      expect((await client.open(packet.id, 'cache-a')).body).toMatchObject({ state: 'already_claimed', amount: first.amount, seq: first.seq });
      expect((await client.grab(packet.id, 'cache-a')).body).toEqual({ state: 'claimed', amount: first.amount });
      // Answered without an actor: none was activated for these.
      expect(h.hongbao.engine.stats.actors).toBe(0);

      // Losing the cache only sends requests on to the actor: same answers, same money.
      await redis.del(`p:${packet.id}`, `p:${packet.id}:c`);
      expect((await client.open(packet.id, 'cache-c')).body).toEqual({ state: 'sold_out' });
      expect((await client.open(packet.id, 'cache-b')).body).toMatchObject({ state: 'already_claimed' });
      await client.expectConserved();
      expect(await client.balance('cache-a')).toBe('1.00');
    } finally {
      redis.disconnect();
    }
  });

  it('with Redis unreachable, opens are answered from memory and the limit falls back to the process', async () => {
    // Nothing listens on port 1: every command fails at once (no offline queue).
    const deadRedis = createRedis('redis://127.0.0.1:1', () => {});
    await deadRedis.connect().catch(() => {});
    try {
      // The process's own bucket allows a burst of 3; Redis's (the same rate) would too, were it up.
      h = await startHarness({ redisUrl: 'redis://127.0.0.1:1', openRate: { burst: 3, perSecond: 0.001 } });
      const client = apiClient(() => h!, 'nocache');
      await client.fund('nocache-sender', '10.00');
      const packet = await client.sendOk('nocache-sender', { type: 'group_lucky', targetId: 'g', count: 3, amount: '3.00' });
      const states = [];
      for (const user of ['n1', 'n2', 'n3', 'n4']) states.push((await client.open(packet.id, user)).body.state);
      expect(states).toEqual(['claimed', 'claimed', 'claimed', 'sold_out']);
      // The process's own bucket (3 opens) decides instead.
      for (let index = 0; index < 3; index += 1) await client.open(packet.id, 'n5');
      expect((await client.open(packet.id, 'n5')).status).toBe(429);
      await client.expectConserved();
    } finally {
      deadRedis.disconnect();
    }
  });

  it('every key a flow writes to Redis has a lifetime (claims, a finished packet, keys made anew after a flush, rate limits)', async () => {
    const redis = createRedis(REDIS_URL, () => {});
    await redis.connect();
    try {
      h = await startHarness({ redisUrl: REDIS_URL });
      const run = `ttl${Date.now().toString(36)}`;
      const client = apiClient(() => h!, run);
      await client.fund(`${run}-s`, '10.00');
      const finished = await client.sendOk(`${run}-s`, { type: 'group_fixed', targetId: 'g', count: 2, amount: '1.00' });
      const live = await client.sendOk(`${run}-s`, { type: 'group_lucky', targetId: 'g', count: 5, amount: '2.00' });
      await client.openOk(finished.id, `${run}-a`);
      await client.openOk(finished.id, `${run}-b`);
      await client.openOk(live.id, `${run}-a`);
      await h.settle();
      // The first claim of a packet whose facts were flushed creates its keys anew.
      await redis.del(`p:${live.id}`, `p:${live.id}:c`);
      await client.openOk(live.id, `${run}-c`);
      await h.settle();
      await new Promise((resolve) => setTimeout(resolve, 50)); // cache writes are fire-and-forget

      const keys = [
        ...(await redis.keys(`hb:p:${finished.id}*`)),
        ...(await redis.keys(`hb:p:${live.id}*`)),
        ...(await redis.keys(`hb:rl:${run}-*`)),
        ...(await redis.keys(`hb:rq:${run}-*`)),
      ].map((key) => key.replace(/^hb:/, ''));
      // The flow wrote them: facts and claims of the finished packet, the claims key the live
      // packet's next claim made anew after the flush, and the openers' buckets.
      expect(keys).toEqual(expect.arrayContaining([`p:${finished.id}`, `p:${finished.id}:c`, `p:${live.id}:c`, `rl:${run}-a`, `rq:${run}-s`]));
      for (const key of keys) expect(await redis.pttl(key), key).toBeGreaterThan(0);
    } finally {
      redis.disconnect();
    }
  });

  it('the request bucket (every route but open) is shared through Redis by every process, and falls back to the process’s own when Redis is down', async () => {
    const run = `rq${Date.now().toString(36)}`;
    const requestRate = { burst: 3, perSecond: 0.001 };
    h = await startHarness({ redisUrl: REDIS_URL, requestRate });
    const other = await startHarness({ redisUrl: REDIS_URL, requestRate });
    const dead = await startHarness({ redisUrl: 'redis://127.0.0.1:1', requestRate });
    try {
      for (let index = 0; index < 3; index += 1) {
        expect((await (index % 2 === 0 ? h : other).call('GET', '/v1/wallet', { user: `${run}-u` })).status).toBe(200);
      }
      // The fourth request, on either process: the one bucket in Redis is empty.
      expect((await other.call('GET', '/v1/wallet', { user: `${run}-u` })).status).toBe(429);
      expect((await h.call('GET', '/v1/me/sent', { user: `${run}-u` })).status).toBe(429);
      expect((await h.call('GET', '/v1/wallet', { user: `${run}-v` })).status).toBe(200);
      // Redis unreachable: the process's own bucket (the same rate) decides.
      for (let index = 0; index < 3; index += 1) expect((await dead.call('GET', '/v1/wallet', { user: `${run}-w` })).status).toBe(200);
      expect((await dead.call('GET', '/v1/wallet', { user: `${run}-w` })).status).toBe(429);
    } finally {
      await other.stop();
      await dead.stop();
    }
  });

  it('takes of one tick go to Redis in one call, each user its own bucket, a user named twice taken twice in order', async () => {
    const redis = createRedis(REDIS_URL, () => {});
    await redis.connect();
    const run = `batch${Date.now().toString(36)}`;
    // Redis's own record of the commands it ran: each script call over this run's keys.
    const monitor = await createRedis(REDIS_URL, () => {}).monitor();
    let calls = 0;
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (/^eval(sha)?$/i.test(args[0] ?? '') && args.some((arg) => arg.includes(run))) calls += 1;
    });
    const settled = () => new Promise((resolve) => setTimeout(resolve, 100));
    const limiter = new RedisRateLimiter(redis, 3, 0.001, new TokenBucketLimiter(1_000, 1_000), () => {}, `${run}:`);
    try {
      const now = Date.now();
      // Five takes by a (burst 3) and two by b, all in one tick.
      const answers = await Promise.all(['a', 'b', 'a', 'a', 'b', 'a', 'a'].map((user) => limiter.take(`${run}-${user}`, now)));
      await settled();
      expect(calls).toBe(1);
      expect(answers).toEqual([true, true, true, true, true, false, false]);
      // The buckets are in Redis: a later call sees a empty and b with one token left.
      expect(await Promise.all([limiter.take(`${run}-a`, now), limiter.take(`${run}-b`, now), limiter.take(`${run}-b`, now)])).toEqual([false, true, false]);
      await settled();
      expect(calls).toBe(2);
      expect(await redis.pttl(`${run}:${run}-a`)).toBeGreaterThan(0);
    } finally {
      monitor.disconnect();
      redis.disconnect();
    }
  });
});
