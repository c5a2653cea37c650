// Proves the engine group's slot assignment (src/log/sticky-assignment.ts) is complete (every slot
// to exactly one engine member), balanced (sizes differ by at most one), gives ledger members
// nothing, is sticky (an unchanged balanced group keeps every slot where it is; a join moves only
// the newcomer's share; a leave moves only the leaver's slots), settles a slot two members claim
// (a paused old process and its successor) on exactly one of them, and is deterministic and
// independent of the order the members are listed in — by examples and fast-check properties.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stickyAssignment, type AssignmentCandidate, type MemberRole } from '../../src/log/sticky-assignment.js';

const engine = (memberId: string, owned: readonly number[] = [], nodeId = memberId, role: MemberRole = 'engine'): AssignmentCandidate => ({
  memberId,
  nodeId,
  role,
  owned,
});

/** Every invariant that holds whatever the members claim: complete, exclusive, balanced, engines only, sorted. */
function expectWellFormed(candidates: readonly AssignmentCandidate[], slotCount: number, result: Map<string, number[]>): void {
  expect([...result.keys()].sort()).toEqual(candidates.map((candidate) => candidate.memberId).sort());
  const engines = candidates.filter((candidate) => candidate.role !== 'ledger');
  for (const candidate of candidates) if (candidate.role === 'ledger') expect(result.get(candidate.memberId)).toEqual([]);
  const everySlot = [...result.values()].flat().sort((left, right) => left - right);
  if (engines.length === 0 || slotCount <= 0) {
    expect(everySlot).toEqual([]);
    return;
  }
  expect(everySlot).toEqual(Array.from({ length: slotCount }, (_, slot) => slot));
  const sizes = engines.map((candidate) => result.get(candidate.memberId)!.length);
  expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
  for (const slots of result.values()) expect(slots).toEqual([...slots].sort((left, right) => left - right));
}

/** Slots whose owner differs between the members' claims and the result (a slot nobody claimed counts as moved). */
function moves(candidates: readonly AssignmentCandidate[], result: Map<string, number[]>, slotCount: number): number {
  let moved = 0;
  for (let slot = 0; slot < slotCount; slot += 1) {
    const owner = [...result].find(([, slots]) => slots.includes(slot))?.[0];
    const claimant = candidates.find((candidate) => candidate.owned.includes(slot))?.memberId;
    if (owner !== claimant) moved += 1;
  }
  return moved;
}

/** The indices 0..length-1 ordered by random keys: a permutation fast-check can shrink. */
const permutation = (length: number) =>
  fc.array(fc.nat(), { minLength: length, maxLength: length }).map((keys) => keys.map((key, index) => [key, index] as const).sort((left, right) => left[0] - right[0] || left[1] - right[1]).map(([, index]) => index));

/** A balanced assignment of slotCount slots over distinct members, in a random layout: what a previous round left. */
const balancedGroup = (memberCountMax: number, slotCountMax: number) =>
  fc
    .record({ memberCount: fc.integer({ min: 1, max: memberCountMax }), slotCount: fc.integer({ min: 1, max: slotCountMax }) })
    .chain(({ memberCount, slotCount }) =>
      fc.record({
        slotCount: fc.constant(slotCount),
        memberIds: fc.uniqueArray(fc.integer({ min: 0, max: 999 }), { minLength: memberCount, maxLength: memberCount }).map((numbers) => numbers.map((number) => `m${number}`)),
        layout: permutation(slotCount),
        sizeOrder: permutation(memberCount),
      }),
    )
    .map(({ slotCount, memberIds, layout, sizeOrder }) => {
      // Sizes floor/ceil of slotCount / members; which members get the larger size is random.
      const base = Math.floor(slotCount / memberIds.length);
      const extra = slotCount % memberIds.length;
      let next = 0;
      const candidates = memberIds.map((memberId, index) => {
        const size = base + (sizeOrder[index]! < extra ? 1 : 0);
        const owned = layout.slice(next, next + size);
        next += size;
        return engine(memberId, owned);
      });
      return { slotCount, candidates };
    });

/** Anything a member might claim: duplicates, slots out of range, negative or fractional numbers, slots others claim too. */
const anyGroup = fc
  .record({
    slotCount: fc.integer({ min: 0, max: 40 }),
    members: fc.uniqueArray(
      fc.record({
        memberId: fc.integer({ min: 0, max: 99 }).map((number) => `m${number}`),
        nodeId: fc.constantFrom('n1', 'n2', 'n3', 'n4'),
        role: fc.constantFrom<MemberRole>('all', 'engine', 'ledger'),
        owned: fc.array(fc.oneof(fc.integer({ min: -2, max: 44 }), fc.double({ min: -1, max: 40, noNaN: true })), { maxLength: 20 }),
      }),
      { maxLength: 8, selector: (member) => member.memberId },
    ),
  })
  .map(({ slotCount, members }) => ({ slotCount, candidates: members as AssignmentCandidate[] }));

describe('stickyAssignment (examples)', () => {
  it('gives one member every slot', () => {
    expect(stickyAssignment([engine('a')], 4)).toEqual(new Map([['a', [0, 1, 2, 3]]]));
  });

  it('deals fresh slots out evenly, the extra slots to the first names', () => {
    const result = stickyAssignment([engine('b'), engine('a'), engine('c')], 8);
    expect(result).toEqual(
      new Map([
        ['b', [1, 3, 6]],
        ['a', [0, 2, 5]],
        ['c', [4, 7]],
      ]),
    );
  });

  it('gives ledger members nothing, and nothing at all when only ledger members are there', () => {
    const result = stickyAssignment([engine('l', [0, 1, 2], 'l', 'ledger'), engine('e', [], 'e', 'all')], 3);
    expect(result.get('l')).toEqual([]);
    expect(result.get('e')).toEqual([0, 1, 2]);
    expect(stickyAssignment([engine('l', [0], 'l', 'ledger')], 3)).toEqual(new Map([['l', []]]));
  });

  it('gives nothing when there are no slots', () => {
    expect(stickyAssignment([engine('a', [0, 1])], 0)).toEqual(new Map([['a', []]]));
  });

  it('keeps every slot where it is when the group is unchanged', () => {
    const candidates = [engine('a', [5, 1, 7]), engine('b', [0, 6, 3]), engine('c', [2, 4])];
    const result = stickyAssignment(candidates, 8);
    expect(result).toEqual(
      new Map([
        ['a', [1, 5, 7]],
        ['b', [0, 3, 6]],
        ['c', [2, 4]],
      ]),
    );
  });

  it('a newcomer takes its share from the members with most, the others keep theirs', () => {
    const candidates = [engine('a', [0, 1, 2, 3]), engine('b', [4, 5, 6, 7]), engine('c')];
    const result = stickyAssignment(candidates, 8);
    expect(result.get('a')!.every((slot) => [0, 1, 2, 3].includes(slot))).toBe(true);
    expect(result.get('b')!.every((slot) => [4, 5, 6, 7].includes(slot))).toBe(true);
    expect(result.get('c')).toHaveLength(2);
    expect(moves(candidates, result, 8)).toBe(2);
  });

  it('a leaver’s slots are shared out, nobody else moves', () => {
    const result = stickyAssignment([engine('a', [0, 1, 2]), engine('c', [6, 7])], 8);
    expect(result.get('a')).toEqual(expect.arrayContaining([0, 1, 2]));
    expect(result.get('c')).toEqual(expect.arrayContaining([6, 7]));
    expect([...result.get('a')!, ...result.get('c')!].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('a slot claimed by a paused old process and by its successor (same NODE_ID) goes to exactly one of them', () => {
    // The zombie still claims what it held before its pause; the successor claims the same.
    const zombie = engine('member-old', [0, 1, 2, 3], 'n1');
    const successor = engine('member-new', [0, 1, 2, 3], 'n1');
    const other = engine('member-b', [4, 5, 6, 7], 'n2');
    const result = stickyAssignment([zombie, successor, other], 8);
    expectWellFormed([zombie, successor, other], 8, result);
    for (const slot of [0, 1, 2, 3]) {
      const holders = ['member-old', 'member-new'].filter((memberId) => result.get(memberId)!.includes(slot));
      expect(holders).toHaveLength(1);
    }
    for (const slot of result.get('member-b')!) expect(other.owned).toContain(slot);
  });

  it('ignores claims on slots out of range, repeated, negative or fractional', () => {
    const candidates = [engine('a', [9, 9, 9, -1, 0.5]), engine('b', [1, 1, 1, 1])];
    const result = stickyAssignment(candidates, 4);
    expectWellFormed(candidates, 4, result);
    expect(result.get('b')).toContain(1);
  });
});

describe('stickyAssignment (properties)', () => {
  it('is complete, exclusive and balanced, and gives ledger members nothing, whatever the members claim', () => {
    fc.assert(
      fc.property(anyGroup, ({ slotCount, candidates }) => {
        expectWellFormed(candidates, slotCount, stickyAssignment(candidates, slotCount));
      }),
      { numRuns: 2000 },
    );
  });

  it('is deterministic and does not depend on the order the members are listed in', () => {
    fc.assert(
      fc.property(
        anyGroup.chain(({ slotCount, candidates }) =>
          fc.record({
            slotCount: fc.constant(slotCount),
            candidates: fc.constant(candidates),
            shuffled: fc.shuffledSubarray(candidates, { minLength: candidates.length, maxLength: candidates.length }),
          }),
        ),
        ({ slotCount, candidates, shuffled }) => {
          const once = stickyAssignment(candidates, slotCount);
          expect(stickyAssignment(candidates, slotCount)).toEqual(once);
          expect(stickyAssignment(shuffled, slotCount)).toEqual(once);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('keeps a balanced assignment exactly as it is when the membership is unchanged', () => {
    fc.assert(
      fc.property(balancedGroup(8, 64), ({ slotCount, candidates }) => {
        const result = stickyAssignment(candidates, slotCount);
        for (const candidate of candidates) expect(result.get(candidate.memberId)).toEqual([...candidate.owned].sort((left, right) => left - right));
      }),
      { numRuns: 1000 },
    );
  });

  it('a member joining k balanced members moves only floor(slotCount / (k + 1)) slots, all to the newcomer', () => {
    fc.assert(
      fc.property(balancedGroup(8, 64), fc.constantFrom('N', 'newcomer', 'a', 'zz'), ({ slotCount, candidates }, newcomerId) => {
        const group = [...candidates, engine(newcomerId)];
        const result = stickyAssignment(group, slotCount);
        expectWellFormed(group, slotCount, result);
        const expected = Math.floor(slotCount / group.length);
        expect(moves(group, result, slotCount)).toBe(expected);
        expect(result.get(newcomerId)).toHaveLength(expected);
        for (const candidate of candidates) for (const slot of result.get(candidate.memberId)!) expect(candidate.owned).toContain(slot);
      }),
      { numRuns: 1000 },
    );
  });

  it('a member leaving moves only the slots it held: everyone else keeps all of theirs', () => {
    fc.assert(
      fc.property(
        balancedGroup(8, 64).filter(({ candidates }) => candidates.length >= 2),
        fc.nat(),
        ({ slotCount, candidates }, pick) => {
          const leaver = candidates[pick % candidates.length]!;
          const remaining = candidates.filter((candidate) => candidate !== leaver);
          const result = stickyAssignment(remaining, slotCount);
          expectWellFormed(remaining, slotCount, result);
          for (const candidate of remaining) expect(result.get(candidate.memberId)).toEqual(expect.arrayContaining([...candidate.owned]));
          expect(moves(remaining, result, slotCount)).toBe(leaver.owned.length);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('a slot claimed by two members (a zombie and its successor) goes to exactly one of them', () => {
    fc.assert(
      fc.property(
        balancedGroup(6, 48).filter(({ candidates }) => candidates.length >= 1),
        fc.nat(),
        fc.boolean(),
        ({ slotCount, candidates }, pick, sameNodeId) => {
          const original = candidates[pick % candidates.length]!;
          // The successor is a new member (restart with the same NODE_ID, or another node that took
          // the slots over) that claims everything the zombie still claims.
          const successor = engine(`${original.memberId}~new`, original.owned, sameNodeId ? original.nodeId : `${original.nodeId}~other`);
          const group = [...candidates, successor];
          const result = stickyAssignment(group, slotCount);
          expectWellFormed(group, slotCount, result);
          for (const slot of original.owned) {
            const holders = [original.memberId, successor.memberId].filter((memberId) => result.get(memberId)!.includes(slot));
            expect(holders.length).toBeLessThanOrEqual(1);
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});
