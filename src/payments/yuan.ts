// Amounts in the provider's messages: yuan strings at the HTTP edge, as in our own API, parsed
// by parseYuan into fen. No order is for less than 0.01.
import { z } from 'zod';
import { parseYuan, type Fen } from '../money/money.js';

export const orderAmount = z.string({ error: 'must be a string of yuan like "20.00"' }).transform((text, context): Fen => {
  try {
    const fen = parseYuan(text);
    if (fen >= 1) return fen;
    context.addIssue({ code: 'custom', message: `must be at least 0.01; got ${JSON.stringify(text)}` });
  } catch (error) {
    context.addIssue({ code: 'custom', message: (error as Error).message });
  }
  return z.NEVER;
});
