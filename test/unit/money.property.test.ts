// Proves, over generated amounts, that yuan strings and integer fen convert both ways without loss and that malformed strings never parse.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatFen, MoneyFormatError, parseYuan } from '../../src/money/money.js';

/** The largest amount the parser admits: twelve integer digits and two decimals. */
const FEN_MAX = 99_999_999_999_999;

describe('money (property)', () => {
  it('parseYuan(formatFen(fen)) = fen for every admissible amount', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: FEN_MAX }), (fen) => {
        expect(parseYuan(formatFen(fen))).toBe(fen);
      }),
      { numRuns: 2000 },
    );
  });

  it('formatFen always writes exactly two decimals', () => {
    fc.assert(
      fc.property(fc.integer({ min: -FEN_MAX, max: FEN_MAX }), (fen) => {
        expect(formatFen(fen)).toMatch(/^-?(0|[1-9][0-9]*)\.[0-9]{2}$/);
      }),
    );
  });

  it('parses "<yuan>.<d>" and "<yuan>.<dd>" digit by digit, with no float rounding', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 999_999_999_999 }),
        fc.integer({ min: 0, max: 99 }),
        fc.boolean(),
        (yuan, cents, oneDecimal) => {
          if (oneDecimal) {
            const tenths = cents % 10;
            expect(parseYuan(`${yuan}.${tenths}`)).toBe(yuan * 100 + tenths * 10);
          } else {
            expect(parseYuan(`${yuan}.${String(cents).padStart(2, '0')}`)).toBe(yuan * 100 + cents);
          }
          expect(parseYuan(String(yuan))).toBe(yuan * 100);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('rejects three or more decimals, signs, exponents and surrounding spaces', () => {
    const valid = fc.integer({ min: 0, max: FEN_MAX }).map(formatFen);
    const malformed = fc.oneof(
      fc.tuple(valid, fc.integer({ min: 0, max: 9 })).map(([text, digit]) => `${text}${digit}`),
      valid.map((text) => `-${text}`),
      valid.map((text) => `+${text}`),
      valid.map((text) => ` ${text}`),
      valid.map((text) => `${text} `),
      valid.map((text) => `${text}e2`),
      valid.map((text) => `0${text}`),
    );
    fc.assert(
      fc.property(malformed, (text) => {
        expect(() => parseYuan(text)).toThrow(MoneyFormatError);
      }),
      { numRuns: 2000 },
    );
  });
});
