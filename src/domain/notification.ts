// What chat apps hear of (API.md, Notifications): one event per thing that happened to a packet
// or a wallet, with a deterministic id (derived from what happened, so deriving it twice is the
// same event), the users it concerns (their live stream), and the API's `data`.
import { formatFen } from '../money/money.js';
import type { Packet } from './packet.js';

export const NOTIFICATION_TYPES = [
  'packet.sent',
  'packet.live',
  'packet.opened',
  'packet.finished',
  'packet.expired',
  'packet.cancelled',
  'wallet.credited',
] as const;
export type NotificationType = (typeof NOTIFICATION_TYPES)[number];

export interface NotificationEvent {
  readonly id: string;
  readonly type: NotificationType;
  /** The packet it is about: deliveries of one packet's events keep their order. */
  readonly packetId: string;
  /** Whose live stream shows it. */
  readonly recipients: readonly string[];
  /** When it happened (the log event's time). */
  readonly createdAtMs: number;
  readonly data: Readonly<Record<string, unknown>>;
}

/** `packet.sent`, written with the packet itself: the log has no event for a send. */
export function sentEvent(packet: Packet): NotificationEvent {
  return {
    id: `evt_sent_${packet.id}`,
    type: 'packet.sent',
    packetId: packet.id,
    recipients: [packet.senderId],
    createdAtMs: packet.createdAtMs,
    data: {
      packetId: packet.id,
      senderId: packet.senderId,
      type: packet.type,
      targetId: packet.targetId,
      count: packet.count,
      total: formatFen(packet.totalFen),
      payWith: packet.payment?.provider ?? 'balance',
    },
  };
}
