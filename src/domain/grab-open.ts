// What 抢 (grab) and 拆 (open) answer (API.md, Packets): plain outcomes, no transport.
import type { Fen } from '../money/money.js';

/** How long a shed request should wait before it tries again. One value for every `busy`. */
export const BUSY_RETRY_AFTER_MS = 100;

/** The one answer of a shed request, wherever it is shed (a packet's waiters, the process, activations). */
export type Busy = { readonly state: 'busy'; readonly retryAfterMs: number };
export const BUSY: Busy = Object.freeze({ state: 'busy', retryAfterMs: BUSY_RETRY_AFTER_MS });

export type OpenOutcome =
  | { state: 'claimed'; amountFen: Fen; seq: number }
  | { state: 'already_claimed'; amountFen: Fen; seq: number }
  | { state: 'sold_out' }
  | { state: 'expired' }
  | { state: 'not_eligible' }
  /** Provider-paid, not paid yet: nothing to open. */
  | { state: 'pending_payment' }
  /** Provider-paid, and the payment failed. */
  | { state: 'cancelled' }
  | Busy;

export type GrabOutcome =
  | { state: 'openable' }
  | { state: 'claimed'; amountFen: Fen }
  | { state: 'sold_out' }
  | { state: 'expired' }
  | { state: 'not_eligible' }
  | { state: 'pending_payment' }
  | { state: 'cancelled' };
