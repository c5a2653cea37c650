// How much the next opener gets. Lucky shares are computed at open time, never pre-stored.
import type { Fen } from '../money/money.js';
import type { Limits } from './limits.js';
import type { PacketType } from './packet.js';
import { randBetween, type Seed } from './random.js';

export interface ShareInput {
  readonly type: PacketType;
  readonly totalFen: Fen;
  readonly count: number;
  readonly remainingFen: Fen;
  readonly remainingCount: number;
  /** 1-based position of the open being decided. */
  readonly seq: number;
  readonly seed: Seed;
}

/**
 * Lucky shares follow the double-mean rule: uniform in [min, 2 × remaining / remainingCount],
 * clamped so every later share can still get at least the minimum and at most the maximum;
 * the last share takes exactly the rest. Fixed and personal shares are the total split evenly.
 */
export function nextShare(input: ShareInput, limits: Limits): Fen {
  const { remainingFen, remainingCount } = input;
  if (remainingCount < 1) throw new RangeError('no share left to allocate');
  if (remainingCount === 1) return remainingFen;
  if (input.type !== 'group_lucky') return input.totalFen / input.count;

  const later = remainingCount - 1;
  const low = Math.max(limits.shareFenMin, remainingFen - later * limits.shareFenMax);
  const high = Math.min(
    limits.shareFenMax,
    Math.floor((2 * remainingFen) / remainingCount),
    remainingFen - later * limits.shareFenMin,
  );
  if (low > high) throw new RangeError(`no valid share: remaining ${remainingFen} over ${remainingCount}`);
  return randBetween(input.seed, input.seq, low, high);
}

/** Every share of a packet in open order, as the engine would hand them out. For tests and audit. */
export function allShares(
  input: Pick<ShareInput, 'type' | 'totalFen' | 'count' | 'seed'>,
  limits: Limits,
): Fen[] {
  const shares: Fen[] = [];
  let remainingFen = input.totalFen;
  for (let seq = 1; seq <= input.count; seq += 1) {
    const share = nextShare({ ...input, remainingFen, remainingCount: input.count - seq + 1, seq }, limits);
    shares.push(share);
    remainingFen -= share;
  }
  return shares;
}
