// A per-user limit shared by every engine process (the open limit, the request limit): a token
// bucket per user in Redis. The takes of one turn of the event loop (a crowd's opens) go to Redis
// as one script call over all their keys, not a call each: the per-command cost of the client
// was a tenth of the HTTP thread's time under a crowd. If Redis does not answer, the process's own
// bucket decides instead. (One call with many keys: a standalone Redis, as REDIS_URL names.)
import type { Redis } from 'ioredis';
import type { RateLimiter } from '../engine/rate-limit.js';

/** One bucket per key, in KEYS order; a key named twice is taken twice, in order. Returns 1 (allowed) or 0 per key. */
const TOKEN_BUCKETS = `
local burst = tonumber(ARGV[1])
local perSecond = tonumber(ARGV[2])
local time = redis.call('TIME')
local nowMs = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lifetime = math.ceil(burst / perSecond * 1000) + 1000
local results = {}
for index, key in ipairs(KEYS) do
  local bucket = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(bucket[1]) or burst
  local at = tonumber(bucket[2]) or nowMs
  tokens = math.min(burst, tokens + (nowMs - at) * perSecond / 1000)
  local allowed = 0
  if tokens >= 1 then
    tokens = tokens - 1
    allowed = 1
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at', nowMs)
  redis.call('PEXPIRE', key, lifetime)
  results[index] = allowed
end
return results`;

/** Takes waiting for this turn's call. */
interface Take {
  readonly userId: string;
  readonly nowMs: number;
  readonly resolve: (allowed: boolean) => void;
}

type WithTakeTokens = Redis & { takeTokens(keyCount: number, ...keysThenArguments: (string | number)[]): Promise<number[]> };

export class RedisRateLimiter implements RateLimiter {
  private readonly redis: WithTakeTokens;
  private waiting: Take[] | undefined;

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
    // defineCommand sends the script once and then calls it by its SHA (EVALSHA); the number of
    // keys comes first in each call.
    if (!('takeTokens' in redis)) redis.defineCommand('takeTokens', { lua: TOKEN_BUCKETS });
    this.redis = redis as WithTakeTokens;
  }

  take(userId: string, nowMs: number): Promise<boolean> {
    if (this.redis.status !== 'ready') return Promise.resolve(this.fallback.take(userId, nowMs));
    return new Promise<boolean>((resolve) => {
      if (this.waiting === undefined) {
        this.waiting = [];
        // setImmediate: every take of this turn of the event loop joins the call.
        setImmediate(() => void this.flush());
      }
      this.waiting.push({ userId, nowMs, resolve });
    });
  }

  private async flush(): Promise<void> {
    const takes = this.waiting ?? [];
    this.waiting = undefined;
    try {
      const allowed = await this.redis.takeTokens(takes.length, ...takes.map((take) => `${this.keyPrefix}${take.userId}`), this.burst, this.perSecond);
      takes.forEach((take, index) => take.resolve(allowed[index] === 1));
    } catch (error) {
      this.onError(error);
      for (const take of takes) take.resolve(await this.fallback.take(take.userId, take.nowMs));
    }
  }
}
