// Proves every packet's shares add up to its total within the per-share limits, are replayable from the seed, vary with it, and are fair per position.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { allShares, nextShare } from '../../src/domain/allocation.js';
import { DEFAULT_LIMITS } from '../../src/domain/limits.js';
import { packetSeed, type Seed } from '../../src/domain/random.js';

const SHARE_FEN_MIN = DEFAULT_LIMITS.shareFenMin; // 1 fen = 0.01 yuan
const SHARE_FEN_MAX = DEFAULT_LIMITS.shareFenMax; // 20,000 fen = 200.00 yuan

const uint32 = fc.integer({ min: 0, max: 0xffff_ffff });
const seedArbitrary: fc.Arbitrary<Seed> = fc.tuple(uint32, uint32, uint32, uint32);

/** A valid lucky packet: 1..100 shares, total in [count × min, count × max] fen. */
const luckyPacket = fc
  .integer({ min: 1, max: DEFAULT_LIMITS.countMax })
  .chain((count) =>
    fc.record({
      count: fc.constant(count),
      totalFen: fc.integer({ min: count * SHARE_FEN_MIN, max: count * SHARE_FEN_MAX }),
    }),
  );

/** Lucky packets where the first opener has a real choice: at least 2 shares, total strictly between the extremes. */
const luckyPacketWithRoom = fc
  .integer({ min: 2, max: DEFAULT_LIMITS.countMax })
  .chain((count) =>
    fc.record({
      count: fc.constant(count),
      totalFen: fc.integer({ min: count * SHARE_FEN_MIN + 1, max: count * SHARE_FEN_MAX - 1 }),
    }),
  );

const sum = (values: readonly number[]) => values.reduce((total, value) => total + value, 0);

describe('group_lucky shares (property)', () => {
  it('sum exactly to the total, one share per count, each within [0.01, 200.00]', () => {
    fc.assert(
      fc.property(luckyPacket, seedArbitrary, ({ count, totalFen }, seed) => {
        const shares = allShares({ type: 'group_lucky', totalFen, count, seed }, DEFAULT_LIMITS);
        expect(shares).toHaveLength(count);
        expect(sum(shares)).toBe(totalFen);
        const outOfBounds = shares.filter(
          (share) => !Number.isSafeInteger(share) || share < SHARE_FEN_MIN || share > SHARE_FEN_MAX,
        );
        expect(outOfBounds).toEqual([]);
      }),
      { numRuns: 1000 },
    );
  });

  it('follow the double-mean rule: every share but the last is at most 2 × remaining / remainingCount', () => {
    fc.assert(
      fc.property(luckyPacket, seedArbitrary, ({ count, totalFen }, seed) => {
        const shares = allShares({ type: 'group_lucky', totalFen, count, seed }, DEFAULT_LIMITS);
        let remainingFen = totalFen;
        shares.forEach((share, index) => {
          const remainingCount = count - index;
          if (remainingCount > 1) expect(share).toBeLessThanOrEqual(Math.floor((2 * remainingFen) / remainingCount));
          else expect(share).toBe(remainingFen); // the last share takes exactly the rest
          remainingFen -= share;
        });
      }),
      { numRuns: 500 },
    );
  });

  it('are deterministic: the same seed gives the same shares (replay and audit)', () => {
    fc.assert(
      fc.property(luckyPacket, seedArbitrary, ({ count, totalFen }, seed) => {
        const first = allShares({ type: 'group_lucky', totalFen, count, seed }, DEFAULT_LIMITS);
        const again = allShares({ type: 'group_lucky', totalFen, count, seed: [...seed] as unknown as Seed }, DEFAULT_LIMITS);
        expect(again).toEqual(first);
      }),
      { numRuns: 300 },
    );
  });

  it('match nextShare decided one open at a time, as the engine does', () => {
    fc.assert(
      fc.property(luckyPacket, seedArbitrary, ({ count, totalFen }, seed) => {
        const shares = allShares({ type: 'group_lucky', totalFen, count, seed }, DEFAULT_LIMITS);
        let remainingFen = totalFen;
        for (let seq = 1; seq <= count; seq += 1) {
          const share = nextShare(
            { type: 'group_lucky', totalFen, count, remainingFen, remainingCount: count - seq + 1, seq, seed },
            DEFAULT_LIMITS,
          );
          expect(share).toBe(shares[seq - 1]);
          remainingFen -= share;
        }
        expect(remainingFen).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  // With count ≥ 2 and a total strictly between count × min and count × max, the first share
  // has at least two possible values, so 32 distinct seeds all giving the same first share has
  // probability at most 2^-31 per run. This is a statement about a batch, not about every pair
  // of seeds: two seeds may well give the same shares.
  it('vary with the seed: over a batch of 32 seeds the first share is not always the same', () => {
    const seeds = Array.from({ length: 32 }, (_, index) => packetSeed('batch-secret', `batch-${index}`));
    fc.assert(
      fc.property(luckyPacketWithRoom, ({ count, totalFen }) => {
        const firstShares = new Set(
          seeds.map((seed) => allShares({ type: 'group_lucky', totalFen, count, seed }, DEFAULT_LIMITS)[0]),
        );
        expect(firstShares.size).toBeGreaterThan(1);
      }),
      { numRuns: 300 },
    );
  });
});

describe('group_lucky edge packets', () => {
  const seed = packetSeed('secret', 'edge');

  it.each([1, 2, 10, 100])('total = %i × 0.01: every share is 0.01', (count) => {
    expect(allShares({ type: 'group_lucky', totalFen: count, count, seed }, DEFAULT_LIMITS)).toEqual(
      Array.from({ length: count }, () => 1),
    );
  });

  it.each([1, 2, 10, 100])('total = %i × 200.00: every share is 200.00', (count) => {
    expect(allShares({ type: 'group_lucky', totalFen: count * SHARE_FEN_MAX, count, seed }, DEFAULT_LIMITS)).toEqual(
      Array.from({ length: count }, () => SHARE_FEN_MAX),
    );
  });

  it.each([1, 777, 20_000])('count 1: the single share is the whole total (%i fen)', (totalFen) => {
    expect(allShares({ type: 'group_lucky', totalFen, count: 1, seed }, DEFAULT_LIMITS)).toEqual([totalFen]);
  });

  it('one fen of room: exactly one share gets 0.02, the rest 0.01', () => {
    const shares = allShares({ type: 'group_lucky', totalFen: 11, count: 10, seed }, DEFAULT_LIMITS);
    expect([...shares].sort((left, right) => left - right)).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1, 2]);
  });

  it('refuses to allocate when no share is left', () => {
    expect(() =>
      nextShare(
        { type: 'group_lucky', totalFen: 100, count: 1, remainingFen: 0, remainingCount: 0, seq: 2, seed },
        DEFAULT_LIMITS,
      ),
    ).toThrow(RangeError);
  });
});

describe('group_fixed and personal shares', () => {
  it('group_fixed: every share equals total / count (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: DEFAULT_LIMITS.countMax }),
        fc.integer({ min: SHARE_FEN_MIN, max: SHARE_FEN_MAX }),
        seedArbitrary,
        (count, shareFen, seed) => {
          const totalFen = shareFen * count;
          const shares = allShares({ type: 'group_fixed', totalFen, count, seed }, DEFAULT_LIMITS);
          expect(shares).toEqual(Array.from({ length: count }, () => totalFen / count));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('personal: the single share is the total', () => {
    expect(allShares({ type: 'personal', totalFen: 520, count: 1, seed: packetSeed('secret', 'p') }, DEFAULT_LIMITS)).toEqual([
      520,
    ]);
  });
});

describe('group_lucky fairness per position', () => {
  // 20,000 packets of 100.00 yuan in 10 shares: whether you open first or last, the expected
  // share is 10.00 yuan. The standard error of each mean is well under 1%, so ±3% is generous.
  it('the mean share at every position is within ±3% of total / count', () => {
    const packets = 20_000;
    const count = 10;
    const totalFen = 10_000;
    const sums = new Array<number>(count).fill(0);
    for (let index = 0; index < packets; index += 1) {
      const shares = allShares({ type: 'group_lucky', totalFen, count, seed: packetSeed('secret', `p${index}`) }, DEFAULT_LIMITS);
      shares.forEach((share, position) => {
        sums[position] = (sums[position] ?? 0) + share;
      });
    }
    const fairShare = totalFen / count;
    for (const positionSum of sums) {
      const mean = positionSum / packets;
      expect(Math.abs(mean - fairShare)).toBeLessThanOrEqual(fairShare * 0.03);
    }
  });
});
