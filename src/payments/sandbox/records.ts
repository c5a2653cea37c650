// What the sandbox remembers: its orders and the notifications not yet answered 200. Both are
// plain JSON records so the whole state can be written to state.json and read back on restart.
import { z } from 'zod';

/** As the sandbox reports an order (provider.ts ProviderOrderStatus). */
export type OrderStatus = 'unpaid' | 'paid' | 'failed';

export interface OrderRecord {
  readonly orderId: string;
  readonly payToken: string;
  readonly amountFen: number;
  readonly description: string;
  readonly notifyUrl: string;
  readonly expiresAtMs: number;
  readonly createdAtMs: number;
  status: OrderStatus;
  /** Closed by the merchant before it was paid: failed, and no longer payable. */
  closed: boolean;
  /** The sandbox's id of the payment, set when the payer went through the sheet (any outcome). */
  transactionId?: string;
}

/** One notification to send; `duplicate` makes two records with the same body. */
export interface DeliveryRecord {
  readonly deliveryId: string;
  readonly orderId: string;
  readonly notifyUrl: string;
  /** The exact JSON sent on every attempt; only the signed headers change between attempts. */
  readonly body: string;
  /** Attempts made so far (answered, failed or timed out). */
  attempts: number;
  /** When the next attempt is due, by the sandbox's clock. */
  nextAttemptAtMs: number;
}

/** A limit on everything: past these the sandbox answers 503 rather than grow without bound. */
export const ORDERS_MAX = 100_000;
export const DELIVERIES_MAX = 10_000;

export const STATE_VERSION = 1;

const orderRecord = z.object({
  orderId: z.string(),
  payToken: z.string(),
  amountFen: z.number().int().positive(),
  description: z.string(),
  notifyUrl: z.string(),
  expiresAtMs: z.number().int(),
  createdAtMs: z.number().int(),
  status: z.enum(['unpaid', 'paid', 'failed']),
  closed: z.boolean(),
  transactionId: z.string().optional(),
});

const deliveryRecord = z.object({
  deliveryId: z.string(),
  orderId: z.string(),
  notifyUrl: z.string(),
  body: z.string(),
  attempts: z.number().int().nonnegative(),
  nextAttemptAtMs: z.number(),
});

/** state.json, checked on load so a damaged file stops the start with its problem named. */
export const stateFile = z.object({
  version: z.literal(STATE_VERSION),
  orders: z.array(orderRecord).max(ORDERS_MAX),
  deliveries: z.array(deliveryRecord).max(DELIVERIES_MAX),
});

export type StateFile = z.infer<typeof stateFile>;
