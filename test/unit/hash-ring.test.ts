// Proves the consistent-hash ring is stable (same key → same owner), spreads keys evenly over 16 owners × 64 virtual nodes, and moves only ~1/N keys, only to the new owner, when membership changes — and moves them back on removal.
import { describe, expect, it } from 'vitest';
import { HashRing, VIRTUAL_NODES_PER_OWNER, hash32 } from '../../src/engine/hash-ring.js';

const OWNER_COUNT = 16;
const KEY_COUNT = 100_000;
const owners = Array.from({ length: OWNER_COUNT }, (_, index) => `shard-${index}`);
/** Deterministic keys in two shapes: sequential ids and hex ids, like the packet ids the engine routes. */
const keys = Array.from({ length: KEY_COUNT }, (_, index) =>
  index % 2 === 0 ? `packet-${index}` : `${(Math.imul(index, 2654435761) >>> 0).toString(16).padStart(8, '0')}-${index.toString(36)}`,
);

function ownersOf(ring: HashRing): string[] {
  return keys.map((key) => ring.ownerOf(key));
}

describe('hash32', () => {
  it('is an unsigned 32-bit integer and a pure function of the text', () => {
    for (const text of ['', 'a', 'packet-1', '红包-42']) {
      const hash = hash32(text);
      expect(Number.isInteger(hash)).toBe(true);
      expect(hash).toBeGreaterThanOrEqual(0);
      expect(hash).toBeLessThanOrEqual(0xffff_ffff);
      expect(hash32(text)).toBe(hash);
    }
    expect(hash32('packet-1')).not.toBe(hash32('packet-2'));
  });
});

describe('HashRing', () => {
  it('uses 64 virtual nodes per owner by default', () => {
    expect(VIRTUAL_NODES_PER_OWNER).toBe(64);
  });

  it('maps the same key to the same owner, on this ring and on any ring built from the same owners', () => {
    const ring = new HashRing(owners);
    const other = new HashRing([...owners].reverse());
    const unstable: string[] = [];
    for (const key of keys) {
      const owner = ring.ownerOf(key);
      if (ring.ownerOf(key) !== owner || other.ownerOf(key) !== owner || !owners.includes(owner)) unstable.push(key);
    }
    expect(unstable).toEqual([]);
  });

  it('spreads 100k keys over 16 owners with each within ±50% of the mean', () => {
    const counts = new Map<string, number>(owners.map((owner) => [owner, 0]));
    for (const owner of ownersOf(new HashRing(owners))) counts.set(owner, counts.get(owner)! + 1);
    const mean = KEY_COUNT / OWNER_COUNT;
    for (const [owner, count] of counts) {
      expect(count, `${owner} holds ${count} keys, mean ${mean}`).toBeGreaterThan(mean * 0.5);
      expect(count, `${owner} holds ${count} keys, mean ${mean}`).toBeLessThan(mean * 1.5);
    }
  });

  it('moves about 1/N of the keys when an owner joins, only to the new owner, and moves them back when it leaves', () => {
    const ring = new HashRing(owners);
    const before = ownersOf(ring);
    ring.add('shard-new');
    const during = ownersOf(ring);
    let moved = 0;
    const movedElsewhere: string[] = [];
    for (let index = 0; index < KEY_COUNT; index += 1) {
      if (during[index] === before[index]) continue;
      moved += 1;
      if (during[index] !== 'shard-new') movedElsewhere.push(keys[index]!);
    }
    expect(movedElsewhere, 'keys that moved between old owners').toEqual([]);
    const ownerCountAfter = OWNER_COUNT + 1;
    expect(moved).toBeGreaterThan(0);
    expect(moved / KEY_COUNT).toBeLessThan(2 / ownerCountAfter);

    ring.remove('shard-new');
    expect(ownersOf(ring)).toEqual(before);
  });

  it('moves only the leaving owner\'s keys when an original owner is removed', () => {
    const ring = new HashRing(owners);
    const before = ownersOf(ring);
    ring.remove('shard-3');
    const after = ownersOf(ring);
    let moved = 0;
    const wronglyMoved: string[] = [];
    for (let index = 0; index < KEY_COUNT; index += 1) {
      if (after[index] === 'shard-3') wronglyMoved.push(keys[index]!);
      if (after[index] === before[index]) continue;
      moved += 1;
      if (before[index] !== 'shard-3') wronglyMoved.push(keys[index]!);
    }
    expect(wronglyMoved, 'keys still on the removed owner, or moved though their owner stayed').toEqual([]);
    expect(moved).toBeGreaterThan(0);
    expect(moved / KEY_COUNT).toBeLessThan(2 / OWNER_COUNT);
    ring.add('shard-3');
    expect(ownersOf(ring)).toEqual(before);
  });

  it('refuses to route on an empty ring', () => {
    const ring = new HashRing<string>([]);
    expect(() => ring.ownerOf('packet-1')).toThrow(RangeError);
    ring.add('only');
    expect(ring.ownerOf('packet-1')).toBe('only');
    ring.remove('only');
    expect(() => ring.ownerOf('packet-1')).toThrow(RangeError);
  });
});
