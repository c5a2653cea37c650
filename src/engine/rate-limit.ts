// A per-user token bucket: a client in a loop gets `rate_limited` instead of crowding out
// everyone else (load shedding per user). In memory per process; Redis shares it across processes.

export interface OpenRate {
  readonly burst: number;
  readonly perSecond: number;
}

/** Opens per user: a burst, then a steady rate. Generous for people, tight for loops. */
export const DEFAULT_OPEN_RATE: OpenRate = { burst: 100, perSecond: 20 };

/** Every other authenticated request of one user (grab, result pages, wallet, records, sends) shares this bucket. */
// Most of these routes read the database; on the embedded default every query queues with the
// claims' durable writes, so this is what one user may cost everyone (bench/RESULTS.md §5).
export const DEFAULT_REQUEST_RATE: OpenRate = { burst: 50, perSecond: 5 };

/** Requests of one user in progress at once; past it 429 at once, nothing queued. */
export const DEFAULT_REQUESTS_IN_FLIGHT_MAX = 32;

export interface RateLimiter {
  /** True if the user may go ahead now. */
  take(userId: string, nowMs: number): boolean | Promise<boolean>;
}

/** Distinct users tracked at once; past it the oldest buckets are forgotten (they were full anyway soon). */
export const BUCKETS_MAX = 100_000;

export class TokenBucketLimiter implements RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>();

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
  ) {}

  take(userId: string, nowMs: number): boolean {
    const bucket = this.buckets.get(userId) ?? { tokens: this.burst, atMs: nowMs };
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((nowMs - bucket.atMs) * this.perSecond) / 1000);
    bucket.atMs = nowMs;
    this.buckets.delete(userId);
    if (this.buckets.size >= BUCKETS_MAX) this.buckets.delete(this.buckets.keys().next().value!);
    this.buckets.set(userId, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }
}
