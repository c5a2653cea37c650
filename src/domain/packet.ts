// The packet and its claims as the domain sees them: plain data, integer fen, times in ms.
import type { Fen } from '../money/money.js';
import type { PaymentPhase } from './payment.js';

export const PACKET_TYPES = ['personal', 'group_fixed', 'group_lucky'] as const;
export type PacketType = (typeof PACKET_TYPES)[number];

/**
 * `live` accepts opens; `finished` has every share claimed; `expired` was closed with a refund.
 * A provider-paid packet is first `pending_payment` (nothing to open), then `awaiting_funds`
 * (openable, money held) until the provider confirms it, or `cancelled` if the payment failed.
 */
export type PacketStatus = 'pending_payment' | 'awaiting_funds' | 'live' | 'finished' | 'expired' | 'cancelled';

export const PAY_WITH = ['balance', 'sandbox'] as const;
export type PayWith = (typeof PAY_WITH)[number];

/** How a provider-paid packet is paid: the provider and the order (ours, one per packet). */
export interface PacketPayment {
  readonly provider: Exclude<PayWith, 'balance'>;
  readonly orderId: string;
}

export interface Packet {
  readonly id: string;
  readonly type: PacketType;
  readonly senderId: string;
  readonly targetId: string;
  readonly count: number;
  readonly totalFen: Fen;
  readonly greeting: string;
  /** Only these users may open a group packet; null means any member of the group. */
  readonly members: readonly string[] | null;
  readonly createdAtMs: number;
  /**
   * When the packet first became openable (paid from the balance: at once; through a provider:
   * when the return or the funds came). Expiry and time-to-empty count from here. Provisional
   * (the send time and its TTL) while a provider-paid packet is pending_payment.
   */
  readonly liveAtMs: number;
  readonly expiresAtMs: number;
  /** Absent for a packet paid from the balance. */
  readonly payment?: PacketPayment;
}

export interface Claim {
  readonly packetId: string;
  /** 1-based position of this open among the packet's claims. */
  readonly seq: number;
  readonly userId: string;
  readonly amountFen: Fen;
  readonly claimedAtMs: number;
}

/** The packet as storage knows it: what an actor is built from. */
export interface StoredPacket {
  readonly packet: Packet;
  /** Durable claims in seq order. */
  readonly claims: readonly Claim[];
  /** Closed at expiry (the refund event is durable). */
  readonly expired: boolean;
  /** The payment as durable (absent: paid from the balance, `funded`). */
  readonly payment?: { readonly phase: PaymentPhase; readonly lateCredited: boolean };
}

/**
 * Who may open a packet: the target of a personal packet (never its sender); anyone of a group,
 * or only the listed members, and always the group packet's own sender (API.md: WeChat allows it).
 */
export function mayOpen(packet: Packet, userId: string): boolean {
  if (packet.type === 'personal') return userId === packet.targetId && userId !== packet.senderId;
  if (userId === packet.senderId) return true;
  if (packet.members !== null) return packet.members.includes(userId);
  return true;
}

/** The sender may always view; anyone who may open may view. */
export function mayView(packet: Packet, userId: string): boolean {
  return userId === packet.senderId || mayOpen(packet, userId);
}
