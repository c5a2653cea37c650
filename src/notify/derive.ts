// From the log's events to what chat apps hear of (API.md, Notifications). Pure: the facts a log
// event does not carry (who sent the packet, its claims for the best luck and the time to empty)
// are read by the notifier once the ledger has applied the batch, and handed in.
import { bestLuck, timeToEmptyMs } from '../domain/outcome.js';
import type { Claim, Packet } from '../domain/packet.js';
import type { NotificationEvent } from '../domain/notification.js';
import type { PacketEvent } from '../log/events.js';
import { formatFen } from '../money/money.js';

export interface PacketFacts {
  readonly packet: Packet;
  /** Claims the ledger holds for it now. */
  readonly claimedCount: number;
  /** Every claim the ledger holds for it, in seq order: read only for a packet that finishes or is funded in the batch. */
  readonly claims: readonly Claim[];
}

/** The packets of a batch whose events need their claims (best luck, time to empty, the held claims a funding credits). */
export function packetsNeedingClaims(events: readonly PacketEvent[], countOf: (packetId: string) => number | undefined): string[] {
  const needing = new Set<string>();
  for (const event of events) {
    if (event.kind === 'payment' && event.change === 'funded') needing.add(event.packetId);
    if (event.kind === 'claim' && event.held !== true && event.seq === countOf(event.packetId)) needing.add(event.packetId);
  }
  return [...needing];
}

const credited = (packet: Packet, claim: Claim, atMs: number): NotificationEvent => ({
  id: `evt_credited_${packet.id}_${claim.seq}`,
  type: 'wallet.credited',
  packetId: packet.id,
  recipients: [claim.userId],
  createdAtMs: atMs,
  data: { userId: claim.userId, amount: formatFen(claim.amountFen), packetId: packet.id, senderId: packet.senderId, seq: claim.seq, reason: 'claim' },
});

function finished(packet: Packet, claims: readonly Claim[], atMs: number): NotificationEvent {
  const best = packet.type === 'group_lucky' ? bestLuck(claims) : undefined;
  return {
    id: `evt_finished_${packet.id}`,
    type: 'packet.finished',
    packetId: packet.id,
    recipients: [packet.senderId],
    createdAtMs: atMs,
    data: {
      packetId: packet.id,
      senderId: packet.senderId,
      count: packet.count,
      total: formatFen(packet.totalFen),
      secondsToEmpty: Math.floor((timeToEmptyMs(packet, claims) ?? 0) / 1000),
      bestLuck: best === undefined ? null : { userId: best.userId, amount: formatFen(best.amountFen), seq: best.seq },
    },
  };
}

/** The notifications of a batch, in log order; an event whose packet has no facts (never stored) yields none. */
export function deriveNotifications(events: readonly PacketEvent[], factsOf: (packetId: string) => PacketFacts | undefined): NotificationEvent[] {
  const derived: NotificationEvent[] = [];
  for (const event of events) {
    const facts = factsOf(event.packetId);
    if (facts === undefined) continue;
    const { packet } = facts;
    const base = { packetId: packet.id, senderId: packet.senderId };
    switch (event.kind) {
      case 'claim': {
        derived.push({
          id: `evt_opened_${packet.id}_${event.seq}`,
          type: 'packet.opened',
          packetId: packet.id,
          recipients: [packet.senderId],
          createdAtMs: event.atMs,
          data: { ...base, userId: event.userId, amount: formatFen(event.amountFen), seq: event.seq, credited: event.held !== true },
        });
        // A held claim is credited, and its packet finishes, when the funds come.
        if (event.held === true) break;
        const claim = { packetId: packet.id, seq: event.seq, userId: event.userId, amountFen: event.amountFen, claimedAtMs: event.atMs };
        derived.push(credited(packet, claim, event.atMs));
        if (event.seq === packet.count) derived.push(finished(packet, facts.claims.slice(0, packet.count), event.atMs));
        break;
      }
      case 'expire':
        derived.push({
          id: `evt_expired_${packet.id}`,
          type: 'packet.expired',
          packetId: packet.id,
          recipients: [packet.senderId],
          createdAtMs: event.atMs,
          data: { ...base, refund: formatFen(event.refundFen), claimedCount: facts.claimedCount },
        });
        break;
      case 'payment':
        switch (event.change) {
          case 'awaiting_funds':
            break;
          case 'funded': {
            // The packet's lifetime starts at its first openable moment: the facts carry it.
            const live: Packet = { ...packet, liveAtMs: event.liveAtMs, expiresAtMs: event.expiresAtMs };
            derived.push({ id: `evt_live_${packet.id}`, type: 'packet.live', packetId: packet.id, recipients: [packet.senderId], createdAtMs: event.atMs, data: base });
            const held = facts.claims.slice(0, event.claimsBefore ?? 0);
            for (const claim of held) derived.push(credited(live, claim, event.atMs));
            if (held.length === packet.count) derived.push(finished(live, held, event.atMs));
            break;
          }
          case 'cancelled':
            derived.push({
              id: `evt_cancelled_${packet.id}`,
              type: 'packet.cancelled',
              packetId: packet.id,
              recipients: [packet.senderId],
              createdAtMs: event.atMs,
              data: { ...base, reason: event.reason ?? 'payment_failed' },
            });
            break;
          case 'late_credit':
            derived.push({
              id: `evt_late_${event.orderId}`,
              type: 'wallet.credited',
              packetId: packet.id,
              recipients: [packet.senderId],
              createdAtMs: event.atMs,
              data: { userId: packet.senderId, amount: formatFen(event.amountFen), packetId: packet.id, senderId: packet.senderId, reason: 'late_credit' },
            });
            break;
        }
        break;
    }
  }
  return derived;
}
