// An in-memory payment provider for the payment simulation (test/unit/payment-simulation.test.ts):
// the PaymentProvider seam as the engine sees it, and the provider's own side — the payer's sheet,
// the synchronous return, the notifications — as the simulation drives it. It believes and issues
// messages the way WeChat Pay or the sandbox do: every return payload and every notification copy
// is signed by a key only this object holds (HMAC here), each copy with its own nonce and the time
// it was sent, so the engine accepts only what this provider issued and refuses a copy that has
// aged past the window. Nothing here is random except what the caller's seeded `random` decides.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Fen } from '../../src/money/money.js';
import {
  NOTIFICATION_WINDOW_MS,
  type CreatedOrder,
  type CreateOrderRequest,
  type NotificationHeaders,
  type OrderState,
  type PaymentProvider,
  type Verdict,
  type VerifiedNotification,
  type VerifiedReturn,
} from '../../src/payments/provider.js';

export const SIM_TIMESTAMP_HEADER = 'x-sim-timestamp';
export const SIM_NONCE_HEADER = 'x-sim-nonce';
export const SIM_SIGNATURE_HEADER = 'x-sim-signature';

/** What the payer does on the sheet: `reversed` tells the app success, then the bank refuses (the order ends failed). */
export type PayerOutcome = 'success' | 'fail' | 'reversed';

/**
 * What a close does to an order whose payment is processing (WeChat's USERPAYING): `refused`
 * leaves it unpaid and payable (the payment may still complete: money for a cancelled packet),
 * `pay_wins` completes the payment first (the close finds it settled), `close_wins` aborts it.
 */
export type CloseRace = 'refused' | 'pay_wins' | 'close_wins';

export interface SimOrder {
  readonly orderId: string;
  readonly amountFen: Fen;
  readonly payToken: string;
  readonly expiresAtMs: number;
  readonly createdAtMs: number;
  status: 'unpaid' | 'paid' | 'failed';
  closed: boolean;
  /** The payer's payment is processing: the order is still unpaid, and a close may not take it. */
  paying: PayerOutcome | undefined;
  /** When a close was refused because the payment was processing. */
  closeRefusedAtMs: number | undefined;
  settledAtMs: number | undefined;
  transactionId: string | undefined;
  /** A notification of this order was answered 200: the provider stops retrying. */
  acknowledged: boolean;
  notificationsIssued: number;
}

/** One notification copy as it goes on the wire: headers and the raw body. */
export interface NotificationCopy {
  readonly orderId: string;
  readonly nonce: string;
  readonly sentAtMs: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export interface SimProviderOptions {
  readonly name?: string;
  readonly now: () => number;
  readonly random: () => number;
  /** Distinguishes this provider's tokens and nonces from another run's. */
  readonly tag: string;
  /** A payment settled inside a close (`pay_wins`): the simulation schedules its return and notifications. */
  readonly onSettled?: (order: SimOrder, returnPayload: string) => void;
}

export class SimProvider implements PaymentProvider {
  readonly name: string;
  readonly orders = new Map<string, SimOrder>();
  /** Chance that a query or a close fails (the provider unreachable): the timeout pass must retry. */
  failRate = 0;
  /** How a close meets a processing payment. */
  closeRace: () => CloseRace;
  readonly stats = { queries: 0, closes: 0, failedCalls: 0, closeRefused: 0, payWins: 0, closeWins: 0, returnsIssued: 0, notificationsIssued: 0 };
  private readonly key: Buffer;
  private serial = 0;

  constructor(private readonly options: SimProviderOptions) {
    this.name = options.name ?? 'sandbox';
    this.key = Buffer.from(`sim-provider-key-${options.tag}`);
    const random = options.random;
    this.closeRace = () => {
      const roll = random();
      return roll < 0.5 ? 'refused' : roll < 0.75 ? 'pay_wins' : 'close_wins';
    };
  }

  // ---- the seam, as the engine calls it -------------------------------------------------------

  async createOrder(request: CreateOrderRequest): Promise<CreatedOrder> {
    const existing = this.orders.get(request.orderId);
    if (existing !== undefined) {
      if (existing.amountFen !== request.amountFen) throw new Error(`sim provider: order ${request.orderId} exists with another amount`);
      return { orderId: existing.orderId, payToken: existing.payToken, amountFen: existing.amountFen, expiresAtMs: existing.expiresAtMs };
    }
    const order: SimOrder = {
      orderId: request.orderId,
      amountFen: request.amountFen,
      payToken: `pt_${this.options.tag}_${(this.serial += 1)}`,
      expiresAtMs: request.expiresAtMs,
      createdAtMs: this.options.now(),
      status: 'unpaid',
      closed: false,
      paying: undefined,
      closeRefusedAtMs: undefined,
      settledAtMs: undefined,
      transactionId: undefined,
      acknowledged: false,
      notificationsIssued: 0,
    };
    this.orders.set(order.orderId, order);
    return { orderId: order.orderId, payToken: order.payToken, amountFen: order.amountFen, expiresAtMs: order.expiresAtMs };
  }

  verifyReturn(payload: string): Verdict<VerifiedReturn> {
    const dot = payload.lastIndexOf('.');
    if (dot <= 0) return { ok: false, reason: 'not a signed return' };
    const content = payload.slice(0, dot);
    if (!this.sameSignature(payload.slice(dot + 1), this.sign(`return\n${content}`))) return { ok: false, reason: 'bad signature' };
    try {
      const parsed = JSON.parse(Buffer.from(content, 'base64url').toString('utf8')) as { orderId: string; outcome: 'success' | 'fail'; amountFen: Fen };
      return { ok: true, value: { orderId: parsed.orderId, outcome: parsed.outcome, amountFen: parsed.amountFen } };
    } catch {
      return { ok: false, reason: 'unreadable content' };
    }
  }

  verifyNotification(headers: NotificationHeaders, body: string, nowMs: number): Verdict<VerifiedNotification> {
    const timestamp = headers(SIM_TIMESTAMP_HEADER);
    const nonce = headers(SIM_NONCE_HEADER);
    const signature = headers(SIM_SIGNATURE_HEADER);
    if (timestamp === undefined || nonce === undefined || signature === undefined) return { ok: false, reason: 'unsigned' };
    if (!/^[0-9]{1,15}$/.test(timestamp) || !/^[A-Za-z0-9_-]{8,128}$/.test(nonce)) return { ok: false, reason: 'malformed headers' };
    if (!this.sameSignature(signature, this.sign(`${timestamp}\n${nonce}\n${body}`))) return { ok: false, reason: 'bad signature' };
    const timestampMs = Number(timestamp);
    if (Math.abs(nowMs - timestampMs) > NOTIFICATION_WINDOW_MS) return { ok: false, reason: 'timestamp outside the window' };
    try {
      const parsed = JSON.parse(body) as { orderId: string; status: 'paid' | 'failed'; amountFen: Fen; transactionId: string };
      return { ok: true, value: { orderId: parsed.orderId, status: parsed.status, amountFen: parsed.amountFen, transactionId: parsed.transactionId, nonce, timestampMs } };
    } catch {
      return { ok: false, reason: 'unreadable body' };
    }
  }

  async queryOrder(orderId: string): Promise<OrderState> {
    this.stats.queries += 1;
    this.maybeFail('query');
    return this.stateOf(this.orderOf(orderId));
  }

  async closeOrder(orderId: string): Promise<OrderState> {
    this.stats.closes += 1;
    this.maybeFail('close');
    const order = this.orderOf(orderId);
    if (order.status === 'unpaid' && order.paying !== undefined) {
      const race = this.closeRace();
      if (race === 'refused') {
        this.stats.closeRefused += 1;
        order.closeRefusedAtMs = this.options.now();
        return this.stateOf(order);
      }
      if (race === 'pay_wins') {
        this.stats.payWins += 1;
        const returnPayload = this.settle(order);
        this.options.onSettled?.(order, returnPayload);
        return this.stateOf(order);
      }
      this.stats.closeWins += 1;
      order.paying = undefined;
    }
    if (order.status === 'unpaid') {
      order.status = 'failed';
      order.closed = true;
    }
    return this.stateOf(order);
  }

  // ---- the provider's own side, as the simulation drives it -----------------------------------

  /** The payer confirms on the sheet; the payment processes until `completePayment`. Null, or why it is refused. */
  startPaying(orderId: string, payToken: string, outcome: PayerOutcome): string | null {
    const order = this.orderOf(orderId);
    if (payToken !== order.payToken) return 'wrong_token';
    if (order.closed) return 'closed';
    if (order.status !== 'unpaid' || order.paying !== undefined) return 'not_payable';
    if (this.options.now() >= order.expiresAtMs) return 'expired';
    order.paying = outcome;
    return null;
  }

  /** The processing payment completes: the order is settled and the app gets its signed return. Null if a close aborted it or it was settled in a close. */
  completePayment(orderId: string): string | null {
    const order = this.orderOf(orderId);
    if (order.paying === undefined) return null;
    return this.settle(order);
  }

  /** A notification copy of the settled order, sent at `sentAtMs`: its own nonce, signed over its timestamp. */
  notification(orderId: string, sentAtMs: number): NotificationCopy {
    const order = this.orderOf(orderId);
    if (order.status === 'unpaid') throw new Error(`sim provider: order ${orderId} is not settled: nothing to notify`);
    order.notificationsIssued += 1;
    this.stats.notificationsIssued += 1;
    const nonce = `nonce_${this.options.tag}_${(this.serial += 1)}`;
    const body = JSON.stringify({ orderId, transactionId: order.transactionId, status: order.status, amountFen: order.amountFen, at: sentAtMs });
    const timestamp = String(sentAtMs);
    return {
      orderId,
      nonce,
      sentAtMs,
      body,
      headers: { [SIM_TIMESTAMP_HEADER]: timestamp, [SIM_NONCE_HEADER]: nonce, [SIM_SIGNATURE_HEADER]: this.sign(`${timestamp}\n${nonce}\n${body}`) },
    };
  }

  /** A notification answered 200: the provider stops retrying it. */
  acknowledge(orderId: string): void {
    this.orderOf(orderId).acknowledged = true;
  }

  /** A return payload this provider never issued (another key): must be refused. */
  forgedReturn(orderId: string, outcome: 'success' | 'fail', amountFen: Fen): string {
    const content = Buffer.from(JSON.stringify({ orderId, outcome, amountFen })).toString('base64url');
    return `${content}.${createHmac('sha256', 'not-the-provider').update(`return\n${content}`).digest('base64url')}`;
  }

  /** A copy with its body changed after signing (its status set to paid): must be refused. */
  tampered(copy: NotificationCopy): NotificationCopy {
    const parsed = JSON.parse(copy.body) as Record<string, unknown>;
    return { ...copy, body: JSON.stringify({ ...parsed, status: parsed.status === 'paid' ? 'failed' : 'paid' }) };
  }

  orderOf(orderId: string): SimOrder {
    const order = this.orders.get(orderId);
    if (order === undefined) throw new Error(`sim provider: no order ${orderId}`);
    return order;
  }

  private settle(order: SimOrder): string {
    const outcome = order.paying!;
    order.paying = undefined;
    order.status = outcome === 'success' ? 'paid' : 'failed';
    order.settledAtMs = this.options.now();
    order.transactionId = `tx_${this.options.tag}_${(this.serial += 1)}`;
    this.stats.returnsIssued += 1;
    const content = Buffer.from(JSON.stringify({ orderId: order.orderId, outcome: outcome === 'fail' ? 'fail' : 'success', amountFen: order.amountFen })).toString('base64url');
    return `${content}.${this.sign(`return\n${content}`)}`;
  }

  private stateOf(order: SimOrder): OrderState {
    return { orderId: order.orderId, status: order.status, amountFen: order.amountFen, closed: order.closed };
  }

  private maybeFail(what: string): void {
    if (this.failRate > 0 && this.options.random() < this.failRate) {
      this.stats.failedCalls += 1;
      throw new Error(`sim provider: ${what} not answered`);
    }
  }

  private sign(text: string): string {
    return createHmac('sha256', this.key).update(text).digest('base64url');
  }

  private sameSignature(given: string, expected: string): boolean {
    const left = Buffer.from(given);
    const right = Buffer.from(expected);
    return left.length === right.length && timingSafeEqual(left, right);
  }
}
