// A per-user limit shared by every engine process (the open limit, the request limit): a token
// bucket in Redis, one Lua call per request. If Redis does not answer, the process's own bucket
// decides instead.
import type { Redis } from 'ioredis';
import type { RateLimiter } from '../engine/rate-limit.js';

const TOKEN_BUCKET = `
local burst = tonumber(ARGV[1])
local perSecond = tonumber(ARGV[2])
local time = redis.call('TIME')
local nowMs = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or burst
local at = tonumber(bucket[2]) or nowMs
tokens = math.min(burst, tokens + (nowMs - at) * perSecond / 1000)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', nowMs)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / perSecond * 1000) + 1000)
return allowed`;

type WithTakeToken = Redis & { takeToken(key: string, burst: number, perSecond: number): Promise<number> };

export class RedisRateLimiter implements RateLimiter {
  private readonly redis: WithTakeToken;

  constructor(
    redis: Redis,
    private readonly burst: number,
    private readonly perSecond: number,
    private readonly fallback: RateLimiter,
    /** Every Redis error is reported here (logged and counted); the fallback then decides. */
    private readonly onError: (error: unknown) => void = () => {},
    /** Names the bucket: `rl:` the open limit, `rq:` the request limit. */
    private readonly keyPrefix = 'rl:',
  ) {
    // defineCommand sends the script once and then calls it by its SHA (EVALSHA).
    redis.defineCommand('takeToken', { numberOfKeys: 1, lua: TOKEN_BUCKET });
    this.redis = redis as WithTakeToken;
  }

  async take(userId: string, nowMs: number): Promise<boolean> {
    if (this.redis.status !== 'ready') return this.fallback.take(userId, nowMs);
    try {
      const allowed = await this.redis.takeToken(`${this.keyPrefix}${userId}`, this.burst, this.perSecond);
      return allowed === 1;
    } catch (error) {
      this.onError(error);
      return this.fallback.take(userId, nowMs);
    }
  }
}
