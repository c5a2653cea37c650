// Proves the request schemas document what is enforced: the money pattern in the document accepts
// exactly what parseYuan accepts, and limits only change the document, never what zod lets
// through (planSend enforces them, with the same Limits object).
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../src/domain/limits.js';
import { parseYuan } from '../../src/money/money.js';
import { sendBody, sendBodySchema, YUAN_IN_PATTERN } from '../../src/http/validation.js';

const parses = (text: string) => {
  try {
    parseYuan(text);
    return true;
  } catch {
    return false;
  }
};

describe('request schemas', () => {
  it.each(['0', '0.01', '12.34', '200', '200.5', '999999999999.99', '1e2', '0.001', '-1', ' 1', 'NaN', '', '01', '1.', '.5', '1,00', '1000000000000'])(
    'the documented money pattern agrees with parseYuan on %j',
    (text) => {
      expect(new RegExp(YUAN_IN_PATTERN).test(text)).toBe(parses(text));
    },
  );

  it('limits change the document, not what the shape check lets through', () => {
    const tight = sendBodySchema({ ...DEFAULT_LIMITS, countMax: 2, greetingLengthMax: 3 });
    const body = { type: 'group_fixed', targetId: 'g', count: 150, amount: '1.00', greeting: 'x'.repeat(500) };
    expect(tight.safeParse(body).success).toBe(true);
    expect(sendBody.safeParse(body).success).toBe(true);
    const bad = { type: 'group_fixed', targetId: 'g', count: 1.5, amount: 1 };
    expect(tight.safeParse(bad).error?.issues.map((issue) => issue.path.join('.'))).toEqual(
      sendBody.safeParse(bad).error?.issues.map((issue) => issue.path.join('.')),
    );
  });
});
