// Facts about a packet derived from its claims: status, best luck, time to empty.
import type { Claim, Packet, PacketStatus } from './packet.js';
import type { PaymentPhase } from './payment.js';

/**
 * Status from facts: a payment not settled is its phase (an awaiting packet with every share
 * claimed is still awaiting_funds: it is not finished until its money is there); otherwise
 * every share claimed → finished, whatever the clock says.
 */
export function statusOf(packet: Packet, claimedCount: number, closedAsExpired: boolean, phase: PaymentPhase = 'funded'): PacketStatus {
  if (phase !== 'funded') return phase;
  if (claimedCount >= packet.count) return 'finished';
  return closedAsExpired ? 'expired' : 'live';
}

/** 手气最佳: the largest amount; on a tie the earliest open (lowest seq) wins. */
export function bestLuck(claims: readonly Claim[]): Claim | undefined {
  let best: Claim | undefined;
  for (const claim of claims) {
    if (best === undefined || claim.amountFen > best.amountFen || (claim.amountFen === best.amountFen && claim.seq < best.seq)) {
      best = claim;
    }
  }
  return best;
}

/** Milliseconds from going live to the last share, for "n个红包, s秒被抢光". */
export function timeToEmptyMs(packet: Packet, claims: readonly Claim[]): number | undefined {
  if (claims.length < packet.count) return undefined;
  let lastMs = packet.liveAtMs;
  for (const claim of claims) lastMs = Math.max(lastMs, claim.claimedAtMs);
  return lastMs - packet.liveAtMs;
}
