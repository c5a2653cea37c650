// Domain values → API.md's JSON: yuan strings with two decimals, ISO-8601 UTC times.
import type { Packet, PacketStatus } from '../domain/packet.js';
import type { ResultPage } from '../domain/result-page.js';
import { formatFen, type Fen } from '../money/money.js';

const iso = (ms: number) => new Date(ms).toISOString();

export interface PacketFacts {
  readonly status: PacketStatus | string;
  readonly claimedCount: number;
  readonly claimedFen: Fen;
}

/** `total` and `claimedAmount` appear only when `reveal` (API.md: who may see the total). */
export function renderPacket(packet: Packet, facts: PacketFacts, reveal: boolean) {
  return {
    id: packet.id,
    type: packet.type,
    senderId: packet.senderId,
    targetId: packet.targetId,
    count: packet.count,
    ...(reveal ? { total: formatFen(packet.totalFen) } : {}),
    greeting: packet.greeting,
    status: facts.status,
    createdAt: iso(packet.createdAtMs),
    expiresAt: iso(packet.expiresAtMs),
    claimedCount: facts.claimedCount,
    ...(reveal ? { claimedAmount: formatFen(facts.claimedFen) } : {}),
    ...(packet.members !== null ? { members: packet.members } : {}),
  };
}

export function renderPage(packet: Packet, facts: PacketFacts, page: ResultPage) {
  return {
    packet: renderPacket(packet, facts, page.revealTotal),
    summary: page.summary,
    ...(page.myAmountFen !== undefined ? { myAmount: formatFen(page.myAmountFen) } : {}),
    ...(page.claims !== undefined
      ? {
          claims: page.claims.map((claim) => ({
            userId: claim.userId,
            amount: formatFen(claim.amountFen),
            claimedAt: iso(claim.claimedAtMs),
            best: claim.best,
          })),
        }
      : {}),
    actions: page.actions,
    ...(page.notice !== undefined ? { notice: page.notice } : {}),
  };
}

export { iso };
