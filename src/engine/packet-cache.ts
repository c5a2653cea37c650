// A shared cache in front of the actors (Redis in services mode). It only ever answers the
// final, negative questions — "sold out", "expired", "you already have X" — and only from
// facts that were durable when written, so a stale or lost cache can send a request on to
// the actor but can never pay anyone or refuse a share that is still there.
import { mayOpen, type Packet, type PacketStatus } from '../domain/packet.js';
import type { Fen } from '../money/money.js';

export interface CachedPacket {
  readonly packet: Packet;
  readonly status: PacketStatus;
  /** The asking user's durable claim, if any. */
  readonly mine: { readonly amountFen: Fen; readonly seq: number } | undefined;
}

export interface PacketCache {
  /** What the cache knows for this user, or null (no entry, or the cache is unreachable). */
  peek(packetId: string, userId: string): Promise<CachedPacket | null>;
  /** A packet's actor came to life: its facts, and all its durable claims. Fire and forget. */
  rememberPacket(packet: Packet, status: PacketStatus, claims: readonly { userId: string; amountFen: Fen; seq: number }[]): void;
  /** A claim became durable; `finished` when it was the last share. Fire and forget. */
  rememberClaim(packet: Packet, claim: { userId: string; amountFen: Fen; seq: number }, finished: boolean): void;
  /** The expiry became durable. Fire and forget. */
  rememberExpired(packet: Packet): void;
}

export type CachedAnswer =
  | { state: 'not_eligible' }
  | { state: 'claimed'; amountFen: Fen; seq: number }
  | { state: 'sold_out' }
  | { state: 'expired' };

/** The final answer a cache entry allows, or undefined when only the actor can decide. */
export function answerFromCache(entry: CachedPacket, userId: string): CachedAnswer | undefined {
  if (!mayOpen(entry.packet, userId)) return { state: 'not_eligible' };
  if (entry.mine !== undefined) return { state: 'claimed', amountFen: entry.mine.amountFen, seq: entry.mine.seq };
  if (entry.status === 'finished') return { state: 'sold_out' };
  if (entry.status === 'expired') return { state: 'expired' };
  return undefined;
}
