// What the engine decides and the ledger applies. Each event maps to exactly one transfer id.
import type { Fen } from '../money/money.js';

export interface ClaimEvent {
  readonly kind: 'claim';
  readonly packetId: string;
  readonly seq: number;
  readonly userId: string;
  readonly amountFen: Fen;
  readonly atMs: number;
  /**
   * Decided while the packet's money had not arrived (awaiting_funds): booked, but credited only
   * once the packet is funded, and void if it is cancelled. Absent means credited as booked.
   */
  readonly held?: true;
}

/**
 * A provider-paid packet's payment moved (domain/payment.ts), decided by its actor in order
 * with its opens. `awaiting_funds` and `funded` carry the lifetime, which starts when the packet
 * first becomes openable; `funded` moves the total from the provider's clearing account into
 * escrow (`fund:<packet>`) and credits every held claim; `late_credit` pays money that came for
 * a cancelled packet to its sender (`late:<order>`).
 */
export interface PaymentEvent {
  readonly kind: 'payment';
  readonly packetId: string;
  readonly change: 'awaiting_funds' | 'funded' | 'cancelled' | 'late_credit';
  readonly provider: string;
  readonly orderId: string;
  readonly senderId: string;
  readonly amountFen: Fen;
  readonly liveAtMs: number;
  readonly expiresAtMs: number;
  /** Why it was cancelled (cancelled only). */
  readonly reason?: 'payment_failed' | 'payment_timeout';
  /** Claims decided before this change (funded: the held ones it credits). */
  readonly claimsBefore?: number;
  readonly atMs: number;
}

/** The packet closed at expiry; the remainder goes back to the sender. */
export interface ExpireEvent {
  readonly kind: 'expire';
  readonly packetId: string;
  readonly senderId: string;
  readonly refundFen: Fen;
  readonly atMs: number;
}

export type PacketEvent = ClaimEvent | ExpireEvent | PaymentEvent;

export const claimTransferId = (packetId: string, seq: number) => `claim:${packetId}:${seq}`;
export const refundTransferId = (packetId: string) => `refund:${packetId}`;
export const sendTransferId = (packetId: string) => `send:${packetId}`;
export const depositTransferId = (key: string) => `deposit:${key}`;
export const fundTransferId = (packetId: string) => `fund:${packetId}`;
export const lateCreditTransferId = (orderId: string) => `late:${orderId}`;

export const walletAccount = (userId: string) => `wallet:${userId}`;
export const escrowAccount = (packetId: string) => `escrow:${packetId}`;
export const DEPOSITS_ACCOUNT = 'external:deposits';
/** One clearing account per payment provider: what it paid in, as a negative balance (like deposits). */
export const providerAccount = (provider: string) => `provider:${provider}`;
