// What the engine decides and the ledger applies. Each event maps to exactly one transfer id.
import type { Fen } from '../money/money.js';

export interface ClaimEvent {
  readonly kind: 'claim';
  readonly packetId: string;
  readonly seq: number;
  readonly userId: string;
  readonly amountFen: Fen;
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

export type PacketEvent = ClaimEvent | ExpireEvent;

export const claimTransferId = (packetId: string, seq: number) => `claim:${packetId}:${seq}`;
export const refundTransferId = (packetId: string) => `refund:${packetId}`;
export const sendTransferId = (packetId: string) => `send:${packetId}`;
export const depositTransferId = (key: string) => `deposit:${key}`;

export const walletAccount = (userId: string) => `wallet:${userId}`;
export const escrowAccount = (packetId: string) => `escrow:${packetId}`;
export const DEPOSITS_ACCOUNT = 'external:deposits';
