// Domain values → API.md's JSON: yuan strings with two decimals, ISO-8601 UTC times.
import type { ClusterView, PacketView, PaymentView } from '../app/service.js';
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
    // A provider-paid packet's lifetime starts when it becomes openable: none yet while unpaid.
    ...(facts.status === 'pending_payment' ? {} : { expiresAt: iso(packet.expiresAtMs) }),
    payWith: packet.payment?.provider ?? 'balance',
    claimedCount: facts.claimedCount,
    ...(reveal ? { claimedAmount: formatFen(facts.claimedFen) } : {}),
    ...(packet.members !== null ? { members: packet.members } : {}),
  };
}

/** What the sender's app needs to pay a provider-paid packet. */
export function renderPayment(payment: PaymentView) {
  return {
    orderId: payment.orderId,
    provider: payment.provider,
    amount: formatFen(payment.amountFen),
    payToken: payment.payToken,
    expiresAt: iso(payment.expiresAtMs),
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
            credited: claim.credited,
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
