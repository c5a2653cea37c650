// Domain values → API.md's JSON: yuan strings with two decimals, ISO-8601 UTC times.
import type { ClusterView, PacketView } from '../app/service.js';
import type { ResultPage } from '../domain/result-page.js';
import { formatFen } from '../money/money.js';

const iso = (ms: number) => new Date(ms).toISOString();

/** `total` and `claimedAmount` appear only when `reveal` (API.md: who may see the total). */
export function renderPacket(view: PacketView, reveal: boolean) {
  const { packet, ...facts } = view;
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

export function renderPage(view: PacketView, page: ResultPage) {
  return {
    packet: renderPacket(view, page.revealTotal),
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

/** API.md's cluster view, field by field: nothing the service adds later leaks out unreviewed. */
export function renderCluster(view: ClusterView) {
  return { self: view.self, nodes: view.nodes.map((node) => ({ id: node.id, url: node.url, role: node.role, owns: [...node.owns] })) };
}

export { iso };
