// A provider-paid packet's payment, as one pure state machine (API.md, Payments through a
// provider). The packet's actor feeds it every signal about the payment, in order with the
// packet's opens, and writes the change it returns as one event: no lock, no race between a
// notification, a return, a timeout and an open.
//
//   pending_payment ──return: success──▶ awaiting_funds ──paid──▶ funded (the packet is live)
//         │  └───────────────paid───────────────────────────────▶ funded
//         └──return: fail / failed / unpaid at timeout──▶ cancelled ◀── awaiting_funds (same)
//   cancelled ──paid──▶ cancelled, and the money is credited to the sender (a late credit, once)
//
// Nothing else moves: a repeated signal, or one that contradicts a settled payment (a failure
// after the money arrived), changes nothing and is reported as ignored.

/** Where a packet's payment stands. A packet paid from the balance is `funded` from the start. */
export const PAYMENT_PHASES = ['pending_payment', 'awaiting_funds', 'funded', 'cancelled'] as const;
export type PaymentPhase = (typeof PAYMENT_PHASES)[number];

/** Everything that can be learned about a payment, from the app, the provider or our own query. */
export const PAYMENT_SIGNALS = ['returned_success', 'returned_fail', 'paid', 'failed', 'unpaid_at_timeout'] as const;
export type PaymentSignal = (typeof PAYMENT_SIGNALS)[number];

/**
 * What the signal does: `awaiting_funds` (openable, money held), `funded` (every held claim is
 * credited), `cancelled` (held claims void), `late_credit` (money for a cancelled packet goes to
 * the sender), or nothing (`none`, with why).
 */
export type PaymentChange =
  | { readonly kind: 'awaiting_funds' }
  | { readonly kind: 'funded' }
  | { readonly kind: 'cancelled'; readonly reason: 'payment_failed' | 'payment_timeout' }
  | { readonly kind: 'late_credit' }
  | { readonly kind: 'none'; readonly why: 'repeat' | 'contradicts_settled' | 'already_credited' };

/** The facts the machine decides from: the phase, and whether a late credit was already made. */
export interface PaymentState {
  readonly phase: PaymentPhase;
  readonly lateCredited: boolean;
}

const REPEAT: PaymentChange = { kind: 'none', why: 'repeat' };
const CONTRADICTS: PaymentChange = { kind: 'none', why: 'contradicts_settled' };
const AWAITING: PaymentChange = { kind: 'awaiting_funds' };
const FUNDED: PaymentChange = { kind: 'funded' };
const FAILED: PaymentChange = { kind: 'cancelled', reason: 'payment_failed' };
const TIMED_OUT: PaymentChange = { kind: 'cancelled', reason: 'payment_timeout' };

/** Every phase × every signal. A cancelled packet's `paid` depends on whether the late credit was made. */
const TABLE: Record<Exclude<PaymentPhase, 'cancelled'>, Record<PaymentSignal, PaymentChange>> = {
  pending_payment: { returned_success: AWAITING, returned_fail: FAILED, paid: FUNDED, failed: FAILED, unpaid_at_timeout: TIMED_OUT },
  // The app said success; if the provider then says it failed (reversed by the bank), the provider decides.
  awaiting_funds: { returned_success: REPEAT, returned_fail: FAILED, paid: FUNDED, failed: FAILED, unpaid_at_timeout: TIMED_OUT },
  // The money is in escrow and may already be paid out: nothing said later undoes that here.
  funded: { returned_success: REPEAT, returned_fail: CONTRADICTS, paid: REPEAT, failed: CONTRADICTS, unpaid_at_timeout: CONTRADICTS },
};

export function decidePayment(state: PaymentState, signal: PaymentSignal): PaymentChange {
  if (state.phase !== 'cancelled') return TABLE[state.phase][signal];
  if (signal === 'paid') return state.lateCredited ? { kind: 'none', why: 'already_credited' } : { kind: 'late_credit' };
  return signal === 'returned_success' ? CONTRADICTS : REPEAT;
}

/** The phase after a change. */
export function phaseAfter(phase: PaymentPhase, change: PaymentChange): PaymentPhase {
  switch (change.kind) {
    case 'awaiting_funds':
      return 'awaiting_funds';
    case 'funded':
      return 'funded';
    case 'cancelled':
      return 'cancelled';
    case 'late_credit':
    case 'none':
      return phase;
  }
}

/** Whether opens are decided: the app may show an awaiting packet, so it is openable (its money held). */
export const isOpenable = (phase: PaymentPhase) => phase === 'awaiting_funds' || phase === 'funded';

const ORDER_PREFIX = 'hb_';

/** A provider-paid packet's order id: ours, derived from the packet, so the provider's notification names its packet. */
export const orderIdOf = (packetId: string) => `${ORDER_PREFIX}${packetId}`;

/** The packet an order id names, or null for an id we could not have made. */
export const packetIdOfOrder = (orderId: string): string | null =>
  orderId.startsWith(ORDER_PREFIX) && orderId.length > ORDER_PREFIX.length ? orderId.slice(ORDER_PREFIX.length) : null;
