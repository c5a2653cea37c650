// The payment state machine (domain/payment.ts) as a table: every phase × every signal, written
// out by hand here rather than derived from the code, so a change to either shows.
import { describe, expect, it } from 'vitest';
import { decidePayment, phaseAfter, PAYMENT_PHASES, PAYMENT_SIGNALS, type PaymentChange, type PaymentPhase, type PaymentSignal } from '../../src/domain/payment.js';

const awaiting: PaymentChange = { kind: 'awaiting_funds' };
const funded: PaymentChange = { kind: 'funded' };
const failed: PaymentChange = { kind: 'cancelled', reason: 'payment_failed' };
const timedOut: PaymentChange = { kind: 'cancelled', reason: 'payment_timeout' };
const repeat: PaymentChange = { kind: 'none', why: 'repeat' };
const contradicts: PaymentChange = { kind: 'none', why: 'contradicts_settled' };
const late: PaymentChange = { kind: 'late_credit' };
const alreadyCredited: PaymentChange = { kind: 'none', why: 'already_credited' };

/** [phase, lateCredited] → signal → [change, phase after]. */
const TABLE: [PaymentPhase, boolean, Record<PaymentSignal, [PaymentChange, PaymentPhase]>][] = [
  ['pending_payment', false, {
    returned_success: [awaiting, 'awaiting_funds'],
    returned_fail: [failed, 'cancelled'],
    paid: [funded, 'funded'],
    failed: [failed, 'cancelled'],
    unpaid_at_timeout: [timedOut, 'cancelled'],
  }],
  ['awaiting_funds', false, {
    returned_success: [repeat, 'awaiting_funds'],
    returned_fail: [failed, 'cancelled'],
    paid: [funded, 'funded'],
    failed: [failed, 'cancelled'],
    unpaid_at_timeout: [timedOut, 'cancelled'],
  }],
  ['funded', false, {
    returned_success: [repeat, 'funded'],
    returned_fail: [contradicts, 'funded'],
    paid: [repeat, 'funded'],
    failed: [contradicts, 'funded'],
    unpaid_at_timeout: [contradicts, 'funded'],
  }],
  ['cancelled', false, {
    returned_success: [contradicts, 'cancelled'],
    returned_fail: [repeat, 'cancelled'],
    paid: [late, 'cancelled'],
    failed: [repeat, 'cancelled'],
    unpaid_at_timeout: [repeat, 'cancelled'],
  }],
  ['cancelled', true, {
    returned_success: [contradicts, 'cancelled'],
    returned_fail: [repeat, 'cancelled'],
    paid: [alreadyCredited, 'cancelled'],
    failed: [repeat, 'cancelled'],
    unpaid_at_timeout: [repeat, 'cancelled'],
  }],
];

describe('the payment state machine', () => {
  it('covers every phase and every signal', () => {
    expect(new Set(TABLE.map(([phase]) => phase))).toEqual(new Set(PAYMENT_PHASES));
    for (const [, , row] of TABLE) expect(Object.keys(row).sort()).toEqual([...PAYMENT_SIGNALS].sort());
  });

  for (const [phase, lateCredited, row] of TABLE) {
    for (const signal of PAYMENT_SIGNALS) {
      const [change, after] = row[signal];
      it(`${phase}${lateCredited ? ' (late credit made)' : ''} × ${signal} → ${change.kind}${'why' in change ? ` (${change.why})` : ''}, then ${after}`, () => {
        const decided = decidePayment({ phase, lateCredited }, signal);
        expect(decided).toEqual(change);
        expect(phaseAfter(phase, decided)).toBe(after);
      });
    }
  }

  it('never leaves funded or cancelled for another phase', () => {
    for (const phase of ['funded', 'cancelled'] as const) {
      for (const signal of PAYMENT_SIGNALS) {
        for (const lateCredited of [false, true]) expect(phaseAfter(phase, decidePayment({ phase, lateCredited }, signal))).toBe(phase);
      }
    }
  });
});
