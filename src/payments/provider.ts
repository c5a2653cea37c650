// The payment provider seam (第三方支付): what the engine needs of WeChat Pay, Alipay or the
// sandbox that ships with the product. An order is created for a packet; the payer pays it on
// the provider's sheet; the provider answers the payer's app synchronously (the "return", which
// the app forwards to us) and notifies the server asynchronously (possibly late, twice or
// never); the server may query or close the order. Every message from the provider is signed
// by it, and verified here before anything is believed.
import type { Fen } from '../money/money.js';

/** As the provider reports an order. A closed order is `failed` (with `closed: true`). */
export type ProviderOrderStatus = 'unpaid' | 'paid' | 'failed';

export interface CreateOrderRequest {
  /** The merchant's order id (out_trade_no): ours, deterministic per packet, so creating twice is one order. */
  readonly orderId: string;
  readonly amountFen: Fen;
  readonly description: string;
  /** Where the provider POSTs its asynchronous notifications for this order. */
  readonly notifyUrl: string;
  /** After this the order can no longer be paid. */
  readonly expiresAtMs: number;
}

export interface CreatedOrder {
  readonly orderId: string;
  /** What the payer's app hands the payment sheet (prepay_id in WeChat Pay). */
  readonly payToken: string;
  readonly amountFen: Fen;
  readonly expiresAtMs: number;
}

export interface OrderState {
  readonly orderId: string;
  readonly status: ProviderOrderStatus;
  readonly amountFen: Fen;
  readonly closed: boolean;
}

/** The synchronous return, verified: what the payment sheet told the payer's app. */
export interface VerifiedReturn {
  readonly orderId: string;
  readonly outcome: 'success' | 'fail';
  readonly amountFen: Fen;
}

/** The asynchronous notification, verified (signature and time window; the nonce is the engine's to check). */
export interface VerifiedNotification {
  readonly orderId: string;
  readonly status: 'paid' | 'failed';
  readonly amountFen: Fen;
  /** The provider's own id of the payment. */
  readonly transactionId: string;
  readonly nonce: string;
  /** The signed timestamp, in ms. */
  readonly timestampMs: number;
}

export type Verdict<Value> = { readonly ok: true; readonly value: Value } | { readonly ok: false; readonly reason: string };

/** The headers a notification is signed with, by name as the provider sends them. */
export type NotificationHeaders = (name: string) => string | undefined;

/** How far a notification's signed timestamp may be from our clock, either way. */
export const NOTIFICATION_WINDOW_MS = 5 * 60_000;

export interface PaymentProvider {
  /** `sandbox` today; the name in `payWith`, in the notify path and in the clearing account. */
  readonly name: string;
  /** Creates (or finds, by orderId) the order. Rejects when the provider cannot be reached or refuses. */
  createOrder(request: CreateOrderRequest): Promise<CreatedOrder>;
  /** The signed synchronous return as the app received it. */
  verifyReturn(payload: string): Verdict<VerifiedReturn>;
  /** A notification's signature over its raw body, and its timestamp within NOTIFICATION_WINDOW_MS of nowMs. */
  verifyNotification(headers: NotificationHeaders, body: string, nowMs: number): Verdict<VerifiedNotification>;
  /** The order as the provider knows it now. */
  queryOrder(orderId: string): Promise<OrderState>;
  /** Closes an unpaid order so it can no longer be paid; a paid order stays paid (and is returned as such). */
  closeOrder(orderId: string): Promise<OrderState>;
}
