// Proves the counter-based generator is pure, stays in [0, 2^53), is keyed by secret and packet id, and draws roughly uniformly.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { packetSeed, rand, randBetween, type Seed } from '../../src/domain/random.js';

const TWO_POW_53 = 2 ** 53;
const uint32 = fc.integer({ min: 0, max: 0xffff_ffff });
const seedArbitrary: fc.Arbitrary<Seed> = fc.tuple(uint32, uint32, uint32, uint32);
const drawIndex = fc.integer({ min: 0, max: 1_000_000 });

/**
 * Pearson's chi-square statistic of bucket counts against a uniform expectation.
 * With 16 buckets (15 degrees of freedom) the 0.1% critical value is 37.7; the tests
 * allow 60 so a fixed seed can never make them flaky, yet a broken generator (a stuck
 * bit, a modulo folded onto a few values) lands in the thousands.
 */
function chiSquare(counts: readonly number[], draws: number): number {
  const expected = draws / counts.length;
  return counts.reduce((statistic, observed) => statistic + (observed - expected) ** 2 / expected, 0);
}

describe('packetSeed', () => {
  it('is four unsigned 32-bit words', () => {
    const seed = packetSeed('secret', 'packet-1');
    expect(seed).toHaveLength(4);
    for (const word of seed) {
      expect(Number.isInteger(word)).toBe(true);
      expect(word).toBeGreaterThanOrEqual(0);
      expect(word).toBeLessThanOrEqual(0xffff_ffff);
    }
  });

  it('is deterministic for the same secret and id', () => {
    expect(packetSeed('secret', 'packet-1')).toEqual(packetSeed('secret', 'packet-1'));
  });

  it('differs per packet id under one secret', () => {
    expect(packetSeed('secret', 'packet-1')).not.toEqual(packetSeed('secret', 'packet-2'));
    const seeds = new Set(Array.from({ length: 1000 }, (_, index) => packetSeed('secret', `p${index}`).join(',')));
    expect(seeds.size).toBe(1000);
  });

  it('differs per secret for one packet id (the public id alone does not give the seed)', () => {
    expect(packetSeed('secret-a', 'packet-1')).not.toEqual(packetSeed('secret-b', 'packet-1'));
    const seeds = new Set(Array.from({ length: 1000 }, (_, index) => packetSeed(`secret-${index}`, 'packet-1').join(',')));
    expect(seeds.size).toBe(1000);
  });
});

describe('rand', () => {
  it('is a pure function of (seed, k)', () => {
    fc.assert(
      fc.property(seedArbitrary, drawIndex, (seed, k) => {
        expect(rand(seed, k)).toBe(rand([...seed] as unknown as Seed, k));
      }),
    );
  });

  it('is an integer in [0, 2^53)', () => {
    fc.assert(
      fc.property(seedArbitrary, drawIndex, (seed, k) => {
        const value = rand(seed, k);
        expect(Number.isSafeInteger(value)).toBe(true);
        expect(value).toBeGreaterThanOrEqual(0);
        expect(value).toBeLessThan(TWO_POW_53);
      }),
      { numRuns: 2000 },
    );
  });

  it('reaches the top of its range: some draws use the highest bits', () => {
    const seed = packetSeed('secret', 'range');
    let maximum = 0;
    for (let k = 0; k < 10_000; k += 1) maximum = Math.max(maximum, rand(seed, k));
    expect(maximum).toBeGreaterThan(TWO_POW_53 * 0.99);
  });

  it('gives different draws for different k under one seed', () => {
    const seed = packetSeed('secret', 'distinct');
    const draws = new Set(Array.from({ length: 10_000 }, (_, k) => rand(seed, k)));
    expect(draws.size).toBe(10_000);
  });

  it('sets each of its 53 bits about half the time', () => {
    const seed = packetSeed('secret', 'bits');
    const draws = 20_000;
    const ones = new Array<number>(53).fill(0);
    for (let k = 0; k < draws; k += 1) {
      let value = rand(seed, k);
      for (let bit = 0; bit < 53; bit += 1) {
        if (value % 2 === 1) ones[bit] = (ones[bit] ?? 0) + 1;
        value = Math.floor(value / 2);
      }
    }
    // σ of each count is √(20,000 / 4) ≈ 71; ±5% of the draws is 14σ.
    for (const count of ones) expect(Math.abs(count / draws - 0.5)).toBeLessThan(0.05);
  });

  it('is roughly uniform over 100k draws along k (chi-square over 16 buckets)', () => {
    const seed = packetSeed('secret', 'uniform-k');
    const draws = 100_000;
    const counts = new Array<number>(16).fill(0);
    for (let k = 1; k <= draws; k += 1) {
      const bucket = Math.floor((rand(seed, k) / TWO_POW_53) * 16);
      counts[bucket] = (counts[bucket] ?? 0) + 1;
    }
    expect(chiSquare(counts, draws)).toBeLessThan(60);
  });

  it('is roughly uniform over 100k packets at the same k (the first open of every packet)', () => {
    const draws = 100_000;
    const counts = new Array<number>(16).fill(0);
    for (let index = 0; index < draws; index += 1) {
      const bucket = Math.floor((rand(packetSeed('secret', `packet-${index}`), 1) / TWO_POW_53) * 16);
      counts[bucket] = (counts[bucket] ?? 0) + 1;
    }
    expect(chiSquare(counts, draws)).toBeLessThan(60);
  });
});

describe('randBetween', () => {
  it('stays within [min, max], both ends included', () => {
    fc.assert(
      fc.property(
        seedArbitrary,
        drawIndex,
        fc.integer({ min: 0, max: 1_000_000 }),
        fc.integer({ min: 0, max: 1_000_000 }),
        (seed, k, min, width) => {
          const value = randBetween(seed, k, min, min + width);
          expect(Number.isSafeInteger(value)).toBe(true);
          expect(value).toBeGreaterThanOrEqual(min);
          expect(value).toBeLessThanOrEqual(min + width);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('returns min when min = max', () => {
    fc.assert(
      fc.property(seedArbitrary, drawIndex, fc.integer({ min: 0, max: 20_000 }), (seed, k, value) => {
        expect(randBetween(seed, k, value, value)).toBe(value);
      }),
    );
  });

  it('hits both ends of a small range', () => {
    const seed = packetSeed('secret', 'ends');
    const seen = new Set(Array.from({ length: 1000 }, (_, k) => randBetween(seed, k, 1, 3)));
    expect([...seen].sort()).toEqual([1, 2, 3]);
  });

  it('is roughly uniform over 100k draws in [1, 16] (chi-square)', () => {
    const seed = packetSeed('secret', 'uniform-between');
    const draws = 100_000;
    const counts = new Array<number>(16).fill(0);
    for (let k = 1; k <= draws; k += 1) {
      const value = randBetween(seed, k, 1, 16);
      counts[value - 1] = (counts[value - 1] ?? 0) + 1;
    }
    expect(chiSquare(counts, draws)).toBeLessThan(60);
  });
});
