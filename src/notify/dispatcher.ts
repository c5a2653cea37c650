// Webhook delivery (API.md, Notifications): from the durable schedule, at least once, in order
// per packet and endpoint, a 2xx counting as delivered; anything else, or no answer within the
// timeout, is retried with exponential backoff and jitter (a few seconds first, gaps capped at an
// hour) until RETRY_HORIZON_MS after the event was scheduled. Bounded: deliveries in flight per
// endpoint (over every process, by lease) and in this process; each attempt runs on its own, so
// one slow endpoint holds only its own share and never delays the others.
import type { Logger } from 'pino';
import { Agent, request } from 'undici';
import type { Clock } from '../engine/clock.js';
import type { CompletedDelivery, DeliveryOutcome, LeasedDelivery } from '../ledger/notifications.js';
import { SIGNATURE_HEADER, signWebhook } from './signature.js';
import type { NotificationStorePort } from './store-port.js';
import { publicOnlyLookup, webhookUrlProblem } from './webhook-url.js';

export const DELIVERY_TIMEOUT_MS = 5_000;
/** Deliveries in flight to one endpoint, over every process (one packet's go one at a time, in order). */
export const IN_FLIGHT_PER_WEBHOOK_MAX = 256;
/** Outcomes are recorded together: at most this many, at most this long after the first. */
const COMPLETIONS_BATCH_MAX = 1024;
const COMPLETIONS_GATHER_MS = 10;
/** Deliveries in flight from this process. */
export const IN_FLIGHT_MAX = 1024;
/** How long a leased delivery is this process's before another may take it (a crash mid-attempt). */
export const LEASE_MS = 30_000;
/** Retried for at least 24 hours (API.md), with an hour's slack for the last gap. */
export const RETRY_HORIZON_MS = 25 * 3600_000;
export const FIRST_RETRY_MS = 1_000;
export const RETRY_GAP_MAX_MS = 3600_000;
/** How often the schedule is looked at when nothing woke the dispatcher. */
export const POLL_MS = 200;

/** The gap before attempt `attempts + 1`: doubling from FIRST_RETRY_MS, capped, with jitter in [½, 1]. */
export function retryDelayMs(attempts: number, random: () => number = Math.random): number {
  const gap = Math.min(RETRY_GAP_MAX_MS, FIRST_RETRY_MS * 2 ** Math.max(0, attempts - 1));
  return Math.round(gap * (0.5 + random() / 2));
}

export interface DispatcherMetrics {
  delivered(lagMs: number): void;
  failed(): void;
  dead(): void;
}

export interface DispatcherOptions {
  readonly store: NotificationStorePort;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics?: DispatcherMetrics;
  /** Whether deliveries may connect to private addresses (WEBHOOK_ALLOW_PRIVATE). */
  readonly allowPrivate: boolean;
  /** Tests shorten these. */
  readonly timeoutMs?: number;
  readonly pollMs?: number;
  readonly retryDelayMs?: (attempts: number) => number;
}

export class Dispatcher {
  private running = false;
  private loop: Promise<void> | undefined;
  private inFlight = 0;
  private readonly attempts = new Set<Promise<void>>();
  private wake: (() => void) | undefined;
  private readonly agent: Agent;
  private completions: CompletedDelivery[] = [];
  private completionTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(private readonly options: DispatcherOptions) {
    this.agent = new Agent({
      connections: IN_FLIGHT_PER_WEBHOOK_MAX,
      headersTimeout: options.timeoutMs ?? DELIVERY_TIMEOUT_MS,
      bodyTimeout: options.timeoutMs ?? DELIVERY_TIMEOUT_MS,
      connect: { timeout: options.timeoutMs ?? DELIVERY_TIMEOUT_MS, ...(options.allowPrivate ? {} : { lookup: publicOnlyLookup }) },
    });
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Something new was scheduled: look now rather than at the next poll. */
  poke(): void {
    this.wake?.();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
    // Attempts in flight end within their timeout; their leases expire if the process dies first.
    await Promise.allSettled([...this.attempts]);
    await this.flush();
    await this.agent.close();
  }

  get deliveriesInFlight(): number {
    return this.inFlight;
  }

  private async run(): Promise<void> {
    while (this.running) {
      let leased: LeasedDelivery[] = [];
      const room = IN_FLIGHT_MAX - this.inFlight;
      if (room > 0) {
        try {
          leased = await this.options.store.leaseDeliveries(this.options.clock.now(), room, IN_FLIGHT_PER_WEBHOOK_MAX, LEASE_MS);
        } catch (error) {
          this.options.logger.warn({ err: error }, 'leasing webhook deliveries failed; retrying');
        }
      }
      for (const delivery of leased) {
        this.inFlight += 1;
        // Its room frees once its outcome is recorded (the flush wakes the loop): a lease before then would find it still taken.
        const attempt = this.attempt(delivery).finally(() => {
          this.inFlight -= 1;
          this.attempts.delete(attempt);
        });
        this.attempts.add(attempt);
      }
      // A full lease means more may be due: look again at once; otherwise wait for a poke or the poll.
      if (leased.length === 0 || leased.length < room) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.options.pollMs ?? POLL_MS);
          this.wake = () => {
            clearTimeout(timer);
            this.wake = undefined;
            resolve();
          };
        });
      }
    }
  }

  private async attempt(delivery: LeasedDelivery): Promise<void> {
    const body = JSON.stringify(delivery.event);
    const startedMs = this.options.clock.now();
    let outcome: DeliveryOutcome;
    // A literal address never goes through the lookup: checked here, as a name's are after DNS.
    const refused = this.options.allowPrivate ? null : webhookUrlProblem(delivery.url, false);
    try {
      if (refused !== null) throw new Error(refused);
      const answer = await request(delivery.url, {
        method: 'POST',
        dispatcher: this.agent,
        headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: signWebhook(delivery.secret, body, startedMs), 'user-agent': 'hongbao-webhooks/1' },
        body,
        signal: AbortSignal.timeout(this.options.timeoutMs ?? DELIVERY_TIMEOUT_MS),
      });
      // Read and dropped: the answer's body means nothing, but it must not hold the connection.
      await answer.body.dump({ limit: 64 * 1024 }).catch(() => {});
      outcome =
        answer.statusCode >= 200 && answer.statusCode < 300
          ? { kind: 'delivered', status: answer.statusCode }
          : this.failure(delivery, answer.statusCode, `answered ${answer.statusCode}`);
    } catch (error) {
      outcome = this.failure(delivery, null, (error as Error).message);
    }
    const nowMs = this.options.clock.now();
    if (outcome.kind === 'delivered') this.options.metrics?.delivered(nowMs - delivery.eventAtMs);
    else if (outcome.kind === 'dead') this.options.metrics?.dead();
    else this.options.metrics?.failed();
    if (outcome.kind === 'dead') this.options.logger.error({ webhookId: delivery.webhookId, eventId: delivery.event.id, error: outcome.error }, 'webhook delivery given up after the retry horizon');
    this.completions.push({ webhookId: delivery.webhookId, eventSeq: delivery.eventSeq, outcome });
    if (this.completions.length >= COMPLETIONS_BATCH_MAX) void this.flush();
    else this.completionTimer ??= setTimeout(() => void this.flush(), COMPLETIONS_GATHER_MS);
  }

  /** Records the gathered outcomes; one that is not recorded stays leased and is attempted again when its lease ends. */
  private flush(): Promise<void> {
    if (this.completionTimer !== undefined) clearTimeout(this.completionTimer);
    this.completionTimer = undefined;
    const batch = this.completions;
    this.completions = [];
    if (batch.length === 0) return this.flushing;
    this.flushing = this.flushing.then(async () => {
      try {
        await this.options.store.completeDeliveries(batch, this.options.clock.now());
      } catch (error) {
        this.options.logger.warn({ err: error, deliveries: batch.length }, 'recording webhook deliveries failed; they are attempted again when their lease ends');
      }
      this.wake?.();
    });
    return this.flushing;
  }

  private failure(delivery: LeasedDelivery, status: number | null, error: string): DeliveryOutcome {
    const nowMs = this.options.clock.now();
    const nextAttemptAtMs = nowMs + (this.options.retryDelayMs ?? retryDelayMs)(delivery.attempts + 1);
    if (nextAttemptAtMs > delivery.firstAttemptAtMs + RETRY_HORIZON_MS) return { kind: 'dead', status, error };
    return { kind: 'retry', status, error, nextAttemptAtMs };
  }
}
