// Per-user admission for every authenticated request: one user may not stall everyone else.
// Two limits: requests of one user in progress at once (past it 429 at once, nothing queued),
// and a token bucket shared by every route but open (open keeps its own, in Service.open).
import { BUSY_RETRY_AFTER_MS } from '../domain/grab-open.js';
import type { OpenRate, RateLimiter } from '../engine/rate-limit.js';
import type { Admission, RequestUse } from './service.js';

export class UserAdmission {
  /** In-progress requests by user; a user leaves the map when their count is back to 0, so its size is at most the requests in progress. */
  private readonly inFlight = new Map<string, number>();

  constructor(
    private readonly requestLimiter: RateLimiter,
    private readonly requestRate: OpenRate,
    private readonly inFlightMax: number,
    private readonly now: () => number,
  ) {}

  async admit(userId: string, use: RequestUse): Promise<Admission> {
    const count = this.inFlight.get(userId) ?? 0;
    // Too many at once: refused before anything else is spent on it (no bucket, no lookup).
    if (count >= this.inFlightMax) return { kind: 'rate_limited', reason: 'in_flight', retryAfterMs: BUSY_RETRY_AFTER_MS };
    this.inFlight.set(userId, count + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const left = (this.inFlight.get(userId) ?? 1) - 1;
      if (left <= 0) this.inFlight.delete(userId);
      else this.inFlight.set(userId, left);
    };
    if (use === 'request') {
      let allowed: boolean;
      try {
        allowed = await this.requestLimiter.take(userId, this.now());
      } catch (error) {
        release();
        throw error;
      }
      if (!allowed) {
        release();
        // One token comes back every 1 / perSecond seconds.
        return { kind: 'rate_limited', reason: 'rate', retryAfterMs: Math.ceil(1000 / this.requestRate.perSecond) };
      }
    }
    return { kind: 'admitted', release };
  }

  /** The limits in force (the OpenAPI document). */
  get limits(): { burst: number; perSecond: number; inFlightMax: number } {
    return { burst: this.requestRate.burst, perSecond: this.requestRate.perSecond, inFlightMax: this.inFlightMax };
  }

  /** Users with requests in progress (metrics, tests). */
  get usersInFlight(): number {
    return this.inFlight.size;
  }
}
