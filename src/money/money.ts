// Money at the edges: yuan strings in, yuan strings out, integer fen (分) everywhere inside.
// decimal.js is used only here, so no float ever touches an amount.
import { Decimal } from 'decimal.js';

/** Integer amount of fen (1 yuan = 100 fen). Always a safe integer. */
export type Fen = number;

/** The only shape accepted at the API: digits, optionally a dot and one or two digits. */
const YUAN_PATTERN = /^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$/;

export class MoneyFormatError extends Error {
  override readonly name = 'MoneyFormatError';
}

/**
 * Parses a yuan string such as "12.34", "0.01" or "200" into fen.
 * Rejects numbers, exponents, signs, spaces, more than two decimals and NaN,
 * because an app that sends those has a bug we must not guess around.
 */
export function parseYuan(input: unknown): Fen {
  if (typeof input !== 'string' || !YUAN_PATTERN.test(input)) {
    throw new MoneyFormatError(
      `amount must be a string of yuan with at most two decimals, like "12.34"; got ${JSON.stringify(input)}`,
    );
  }
  const fen = new Decimal(input).times(100);
  if (!fen.isInteger() || !Number.isSafeInteger(fen.toNumber())) {
    throw new MoneyFormatError(`amount out of range: ${input}`);
  }
  return fen.toNumber();
}

/** Formats fen as yuan with exactly two decimals: 20000 → "200.00", -5 → "-0.05". */
export function formatFen(fen: Fen): string {
  if (!Number.isSafeInteger(fen)) throw new RangeError(`fen must be a safe integer, got ${fen}`);
  return new Decimal(fen).dividedBy(100).toFixed(2);
}
