// The slot assignment the group leader computes: balanced, and sticky — a member keeps the
// slots it holds as long as that stays balanced, so a node joining or leaving moves only the
// slots it must (kafkajs has no cooperative or sticky assignor of its own; this is the rule of
// Kafka's StickyAssignor, for one topic). Pure, for the leader and for the tests.

export type MemberRole = 'all' | 'engine' | 'ledger';

export interface AssignmentCandidate {
  readonly memberId: string;
  readonly nodeId: string;
  readonly role: MemberRole;
  /** The slots the member holds now, as it said when it joined. */
  readonly owned: readonly number[];
}

/** Not localeCompare: every node must compute the same order, whatever its locale. */
const byCodePoint = (left: string, right: string) => (left < right ? -1 : left > right ? 1 : 0);

/** memberId → its slots, ascending. Every slot goes to exactly one engine member; ledger members get none. */
export function stickyAssignment(candidates: readonly AssignmentCandidate[], slotCount: number): Map<string, number[]> {
  const result = new Map<string, number[]>(candidates.map((candidate) => [candidate.memberId, []]));
  const engines = candidates.filter((candidate) => candidate.role !== 'ledger');
  if (engines.length === 0 || slotCount <= 0) return result;
  // Who gets one slot more than the others: those holding most already (fewest moves), then by name.
  const byClaim = [...engines].sort(
    (left, right) => right.owned.length - left.owned.length || byCodePoint(left.nodeId, right.nodeId) || byCodePoint(left.memberId, right.memberId),
  );
  const base = Math.floor(slotCount / engines.length);
  const extra = slotCount % engines.length;
  const quota = new Map(byClaim.map((candidate, index) => [candidate.memberId, base + (index < extra ? 1 : 0)]));
  const taken = new Set<number>();
  // Keep what each holds, up to its quota; a slot two members claim (a paused old process and
  // its successor) goes to the first in that order, and the broker's fence settles the rest.
  for (const candidate of byClaim) {
    const mine = result.get(candidate.memberId)!;
    for (const slot of [...new Set(candidate.owned)].sort((left, right) => left - right)) {
      if (mine.length >= quota.get(candidate.memberId)! ) break;
      if (Number.isInteger(slot) && slot >= 0 && slot < slotCount && !taken.has(slot)) {
        mine.push(slot);
        taken.add(slot);
      }
    }
  }
  // The rest, ascending, each to the member furthest below its quota.
  for (let slot = 0; slot < slotCount; slot += 1) {
    if (taken.has(slot)) continue;
    let best: AssignmentCandidate | undefined;
    let bestRoom = 0;
    for (const candidate of byClaim) {
      const room = quota.get(candidate.memberId)! - result.get(candidate.memberId)!.length;
      if (room > bestRoom) {
        best = candidate;
        bestRoom = room;
      }
    }
    result.get(best!.memberId)!.push(slot);
    taken.add(slot);
  }
  for (const slots of result.values()) slots.sort((left, right) => left - right);
  return result;
}
