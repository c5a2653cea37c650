// Proves the edge parser accepts exactly the API's yuan strings and formats fen with two decimals.
import { describe, expect, it } from 'vitest';
import { formatFen, MoneyFormatError, parseYuan } from '../../src/money/money.js';

describe('parseYuan', () => {
  it.each([
    ['12.34', 1234],
    ['0.01', 1],
    ['200', 20000],
    ['200.0', 20000],
    ['0', 0],
    ['1.5', 150],
    ['999999999999.99', 99999999999999],
  ])('parses %s as %i fen', (input, fen) => {
    expect(parseYuan(input)).toBe(fen);
  });

  it.each([12.34, 100, '1e2', '0.001', '-1', ' 1', '1 ', 'NaN', '', '.5', '01', '1.', '+1', 'Infinity', '0x10', null, undefined, {}, '１'])(
    'rejects %j',
    (input) => {
      expect(() => parseYuan(input)).toThrow(MoneyFormatError);
    },
  );
});

describe('formatFen', () => {
  it.each([
    [20000, '200.00'],
    [1, '0.01'],
    [0, '0.00'],
    [1234, '12.34'],
    [-5, '-0.05'],
  ])('formats %i as %s', (fen, text) => {
    expect(formatFen(fen)).toBe(text);
  });

  it('round-trips every parse', () => {
    for (const text of ['0.01', '12.34', '200.00', '7.10']) expect(formatFen(parseYuan(text))).toBe(text);
  });

  it('refuses non-integers', () => {
    expect(() => formatFen(1.5)).toThrow(RangeError);
  });
});
