// Product limits, WeChat's defaults; configurable per deployment.
import type { Fen } from '../money/money.js';

export interface Limits {
  readonly countMax: number;
  readonly shareFenMin: Fen;
  readonly shareFenMax: Fen;
  readonly greetingLengthMax: number;
  readonly ttlMs: number;
}

export const DEFAULT_LIMITS: Limits = {
  countMax: 100,
  shareFenMin: 1,
  shareFenMax: 20_000,
  greetingLengthMax: 100,
  ttlMs: 24 * 60 * 60 * 1000,
};

export const DEFAULT_GREETING = '恭喜发财,大吉大利';
