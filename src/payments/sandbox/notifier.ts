// Sends the asynchronous notifications and retries them, as a real provider does: a delivery is
// done only when the merchant answers HTTP 200; anything else, a timeout or a connection error
// is tried again later with exponential backoff and jitter, up to attemptsMax attempts. Each
// attempt is signed anew (fresh timestamp and nonce), so a merchant's replay check never sees
// one nonce twice. Every delivery has its own timer and its own request, so a slow merchant
// holds up nobody else (up to DELIVERIES_IN_FLIGHT_MAX at once; the rest wait their turn).
import { randomBytes, type KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { Agent, request } from 'undici';
import { signNotification } from '../signing.js';
import type { DeliveryRecord } from './records.js';
import type { SandboxStore } from './store.js';

export interface RetryOptions {
  /** The pause after the first failed attempt; doubled after each further one. */
  readonly firstDelayMs: number;
  readonly maxDelayMs: number;
  /** Attempts in all, the first included; after the last failed one the delivery is dropped. */
  readonly attemptsMax: number;
}

export const DEFAULT_RETRY: RetryOptions = { firstDelayMs: 1_000, maxDelayMs: 60_000, attemptsMax: 20 };
/** An attempt not answered within this is a failed one. */
export const ATTEMPT_TIMEOUT_MS = 5_000;
export const DELIVERIES_IN_FLIGHT_MAX = 64;
/** What is read of a merchant's answer (then the connection is dropped). */
const ANSWER_BYTES_MAX = 64 * 1024;
/** setTimeout's own limit; a longer wait is taken in steps. */
const TIMER_DELAY_MAX_MS = 2 ** 31 - 1;

export interface NotifierOptions {
  readonly store: SandboxStore;
  readonly privateKey: KeyObject;
  readonly now: () => number;
  readonly retry: RetryOptions;
  readonly logger: Logger;
  readonly attemptTimeoutMs: number;
}

/** Equal jitter: half the doubled delay for sure, the other half at random, so retries spread out. */
export function backoffDelayMs(failedAttempts: number, retry: RetryOptions, random: () => number = Math.random): number {
  const doubled = retry.firstDelayMs * 2 ** Math.min(failedAttempts - 1, 40);
  const delay = Math.min(retry.maxDelayMs, doubled);
  return Math.round(delay / 2 + random() * (delay / 2));
}

export class Notifier {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Due, waiting for a free slot under DELIVERIES_IN_FLIGHT_MAX. */
  private readonly waiting: string[] = [];
  private readonly stopping = new AbortController();
  // Our own connection pool, so close() can drop every socket it opened.
  private readonly agent = new Agent({ keepAliveTimeout: 4_000, connect: { timeout: ATTEMPT_TIMEOUT_MS } });
  private closed = false;

  constructor(private readonly options: NotifierOptions) {}

  /** Starts the timers of every delivery in the store (those loaded on restart included). */
  start(): void {
    for (const delivery of this.options.store.deliveries.values()) this.schedule(delivery);
  }

  /** The caller has put `delivery` in the store (and persisted it). */
  schedule(delivery: DeliveryRecord): void {
    if (this.closed) return;
    const wait = Math.max(0, delivery.nextAttemptAtMs - this.options.now());
    const timer = setTimeout(() => {
      this.timers.delete(delivery.deliveryId);
      if (wait > TIMER_DELAY_MAX_MS) this.schedule(delivery);
      else this.due(delivery.deliveryId);
    }, Math.min(wait, TIMER_DELAY_MAX_MS));
    this.timers.set(delivery.deliveryId, timer);
  }

  /** Deliveries not yet answered 200 (and not given up). */
  pendingCount(): number {
    return this.options.store.deliveries.size;
  }

  private due(deliveryId: string): void {
    if (this.closed) return;
    if (this.inFlight.size >= DELIVERIES_IN_FLIGHT_MAX) {
      this.waiting.push(deliveryId);
      return;
    }
    const attempt = this.attempt(deliveryId).finally(() => {
      this.inFlight.delete(deliveryId);
      const next = this.waiting.shift();
      if (next !== undefined) this.due(next);
    });
    this.inFlight.set(deliveryId, attempt);
  }

  private async attempt(deliveryId: string): Promise<void> {
    const { store, logger } = this.options;
    const delivery = store.deliveries.get(deliveryId);
    if (delivery === undefined) return;
    const failure = await this.send(delivery);
    // Stopped mid-attempt: the record stays as it was, so a restart tries this attempt again.
    if (this.closed) return;
    delivery.attempts += 1;
    if (failure === undefined) {
      store.deliveries.delete(deliveryId);
      logger.debug({ deliveryId, orderId: delivery.orderId, attempts: delivery.attempts }, 'notification delivered');
    } else if (delivery.attempts >= this.options.retry.attemptsMax) {
      store.deliveries.delete(deliveryId);
      logger.warn({ deliveryId, orderId: delivery.orderId, attempts: delivery.attempts, failure }, 'notification given up after attemptsMax attempts');
    } else {
      delivery.nextAttemptAtMs = this.options.now() + backoffDelayMs(delivery.attempts, this.options.retry);
      logger.info({ deliveryId, orderId: delivery.orderId, attempts: delivery.attempts, failure, nextAttemptAtMs: delivery.nextAttemptAtMs }, 'notification not accepted; will retry');
      this.schedule(delivery);
    }
    // A failed write is only logged: the record is still in memory, and the next change writes it again.
    await store.persist().catch((error: unknown) => logger.error({ err: error }, 'sandbox state not written'));
  }

  /** One signed attempt; undefined when answered 200, else what went wrong. */
  private async send(delivery: DeliveryRecord): Promise<string | undefined> {
    const timestamp = String(Math.floor(this.options.now() / 1000));
    const nonce = randomBytes(16).toString('hex');
    const signature = signNotification(this.options.privateKey, timestamp, nonce, delivery.body);
    const timeout = AbortSignal.timeout(this.options.attemptTimeoutMs);
    try {
      const answer = await request(delivery.notifyUrl, {
        method: 'POST',
        dispatcher: this.agent,
        signal: AbortSignal.any([this.stopping.signal, timeout]),
        headers: {
          'content-type': 'application/json',
          'x-sandbox-timestamp': timestamp,
          'x-sandbox-nonce': nonce,
          'x-sandbox-signature': signature,
        },
        body: delivery.body,
      });
      await answer.body.dump({ limit: ANSWER_BYTES_MAX }).catch(() => undefined);
      return answer.statusCode === 200 ? undefined : `answered ${answer.statusCode}`;
    } catch (error) {
      return timeout.aborted ? 'timed out' : `not reached: ${(error as Error).message}`;
    }
  }

  /** Stops every timer and aborts the attempts in flight; resolves when they have settled. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.waiting.length = 0;
    this.stopping.abort();
    await Promise.allSettled([...this.inFlight.values()]);
    await this.agent.destroy().catch(() => undefined);
  }
}
