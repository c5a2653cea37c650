// The one workload every baseline runs, the result every baseline reports, and the check
// that rejects a run whose money does not add up. Shared so the designs differ only in how
// they decide an open, never in what they are asked to do or how they are judged.
import { createHash } from 'node:crypto';
import { allShares } from '../../src/domain/allocation.js';
import { DEFAULT_LIMITS } from '../../src/domain/limits.js';
import { packetSeed } from '../../src/domain/random.js';
import { seededRandom } from '../support.js';

export interface Workload {
  readonly packets: number;
  /** Shares per packet (100: WeChat's maximum). */
  readonly sharesPerPacket: number;
  /** Distinct users opening each packet; more than the shares, so every packet sells out and some opens lose. */
  readonly openersPerPacket: number;
  /** Fen per packet. */
  readonly totalFen: number;
  /** Opens in flight at once from this client. */
  readonly concurrency: number;
  /** Keys the per-packet seeds (packetSeed) and the schedule's shuffle. */
  readonly seedSecret: string;
  /**
   * How many packets are being opened at the same time (default: all of them). The schedule
   * releases packets in waves of this many and shuffles the opens within a wave, so a small
   * value concentrates the in-flight opens on few packets: the crowd in one busy group chat.
   */
  readonly livePackets?: number;
}

export interface Open {
  readonly packetId: string;
  readonly userId: string;
}

export interface Claim {
  readonly packetId: string;
  readonly userId: string;
  readonly amountFen: number;
}

/** What one open came to. `busy`: the design gave up (pg-cas after its bounded retries). */
export type Outcome =
  | { readonly kind: 'claimed'; readonly amountFen: number }
  | { readonly kind: 'already' }
  | { readonly kind: 'sold_out' }
  | { readonly kind: 'busy' };

export interface BaselineResult {
  design: string;
  opens: number;
  claims: number;
  elapsedMs: number;
  claimsPerSecond: number;
  opensPerSecond: number;
  latencyMs: { p50: number; p99: number };
  verified: true;
  /** Everything else worth reading: the workload, outcome counts, retries, server settings. */
  [extra: string]: unknown;
}

export const LIMITS = DEFAULT_LIMITS;

export function packetIds(workload: Workload): string[] {
  return Array.from({ length: workload.packets }, (_, index) => `p${index}`);
}

/** Every packet's shares in open order, by the engine's rule and seed: what a correct design hands out. */
export function sharesOf(workload: Workload, packetId: string): number[] {
  return allShares(
    { type: 'group_lucky', totalFen: workload.totalFen, count: workload.sharesPerPacket, seed: packetSeed(workload.seedSecret, packetId) },
    LIMITS,
  );
}

function scheduleSeed(workload: Workload): number {
  return createHash('sha256').update(`schedule:${workload.seedSecret}`).digest().readUInt32LE(0);
}

/**
 * The open schedule: each packet gets `openersPerPacket` distinct users drawn from a population
 * ten times that size (a user opens about one packet in ten), and the opens of every wave of
 * `livePackets` packets are shuffled together so opens on one packet race each other.
 * Deterministic: the same workload gives the same schedule in every process.
 */
export function openSchedule(workload: Workload): Open[] {
  const random = seededRandom(scheduleSeed(workload));
  const pick = (bound: number) => Math.floor(random() * bound);
  const population = Array.from({ length: workload.openersPerPacket * 10 }, (_, index) => `u${index}`);
  const ids = packetIds(workload);
  const wave = Math.max(1, Math.min(workload.livePackets ?? ids.length, ids.length));
  const schedule: Open[] = [];
  for (let first = 0; first < ids.length; first += wave) {
    const opens: Open[] = [];
    for (const packetId of ids.slice(first, first + wave)) {
      // Partial Fisher–Yates: the first openersPerPacket slots become a fresh distinct sample.
      for (let slot = 0; slot < workload.openersPerPacket; slot += 1) {
        const other = slot + pick(population.length - slot);
        [population[slot], population[other]] = [population[other]!, population[slot]!];
        opens.push({ packetId, userId: population[slot]! });
      }
    }
    for (let index = opens.length - 1; index > 0; index -= 1) {
      const other = pick(index + 1);
      [opens[index], opens[other]] = [opens[other]!, opens[index]!];
    }
    for (const open of opens) schedule.push(open);
  }
  return schedule;
}

export class VerificationError extends Error {
  override readonly name = 'VerificationError';
}

/**
 * Throws unless, for every packet: exactly sharesPerPacket claims, Σ = totalFen to the fen,
 * no user twice, each share an integer within the limits, and the amounts are exactly the
 * shares the double-mean rule gives for that packet's seed (in any order). No claim may
 * name a packet outside the workload.
 */
export function verify(claims: readonly Claim[], workload: Workload): void {
  const byPacket = new Map<string, Claim[]>(packetIds(workload).map((id) => [id, []]));
  for (const claim of claims) {
    const list = byPacket.get(claim.packetId);
    if (list === undefined) throw new VerificationError(`claim on unknown packet ${claim.packetId}`);
    list.push(claim);
  }
  for (const [packetId, list] of byPacket) {
    const fail = (why: string) => new VerificationError(`packet ${packetId}: ${why}`);
    if (list.length !== workload.sharesPerPacket) throw fail(`${list.length} claims, expected ${workload.sharesPerPacket}`);
    const users = new Set<string>();
    let sum = 0;
    for (const { userId, amountFen } of list) {
      if (users.has(userId)) throw fail(`user ${userId} claimed twice`);
      users.add(userId);
      if (!Number.isSafeInteger(amountFen) || amountFen < LIMITS.shareFenMin || amountFen > LIMITS.shareFenMax) {
        throw fail(`share ${amountFen} outside [${LIMITS.shareFenMin}, ${LIMITS.shareFenMax}]`);
      }
      sum += amountFen;
    }
    if (sum !== workload.totalFen) throw fail(`Σ claims = ${sum}, expected ${workload.totalFen}`);
    const got = list.map((claim) => claim.amountFen).sort((a, b) => a - b);
    const want = sharesOf(workload, packetId).sort((a, b) => a - b);
    if (got.some((amount, index) => amount !== want[index])) throw fail('amounts are not the double-mean shares of its seed');
  }
}

/** Throws unless what the openers were told equals what the store holds, claim for claim. */
export function verifyObserved(observed: readonly Claim[], stored: readonly Claim[]): void {
  const key = (claim: Claim) => `${claim.packetId}\u0000${claim.userId}`;
  const held = new Map(stored.map((claim) => [key(claim), claim.amountFen]));
  if (observed.length !== stored.length) {
    throw new VerificationError(`openers were told of ${observed.length} claims, the store holds ${stored.length}`);
  }
  for (const claim of observed) {
    if (held.get(key(claim)) !== claim.amountFen) {
      throw new VerificationError(`${claim.userId} was told ${claim.amountFen} on ${claim.packetId}, the store holds ${held.get(key(claim))}`);
    }
  }
}

/** One baseline design. Only `open` is timed; the rest is setup, audit and cleanup. */
export interface Design {
  readonly name: string;
  /** Create every packet's state, open connections, load scripts and prepared plans. */
  setup(): Promise<void>;
  /** Decide one open, durably as far as the design goes, and say what the opener gets. */
  open(open: Open): Promise<Outcome>;
  /** Every claim as the store holds it after the run: the truth that verify() judges. */
  storedClaims(): Promise<Claim[]>;
  /** Counters and server settings worth reporting next to the numbers. */
  extra(): Promise<Record<string, unknown>>;
  /** Drop everything the run created; safe to call after a failed setup. */
  cleanup(): Promise<void>;
}
