// The packet cache in Redis: a hash of facts per packet and a hash of durable claims per
// packet. Written after durability, read before activation; any Redis error means "no entry".
import type { Redis } from 'ioredis';
import type { Packet, PacketStatus } from '../domain/packet.js';
import type { CachedPacket, PacketCache } from '../engine/packet-cache.js';
import type { Fen } from '../money/money.js';

/** Entries outlive their packet by this much, then Redis forgets them. */
const RETENTION_AFTER_EXPIRY_MS = 7 * 24 * 60 * 60 * 1000;

const factsKey = (packetId: string) => `p:${packetId}`;
const claimsKey = (packetId: string) => `p:${packetId}:c`;

type Pipeline = ReturnType<Redis['pipeline']>;

/** A pipeline being filled, and the lifetime its packets' keys get after all its writes. */
interface PendingWrites {
  readonly pipeline: Pipeline;
  readonly expiring: Map<string, number>;
  /** Claims to add to each packet's claims hash: one HSET per packet per pipeline, not one per claim. */
  readonly claims: Map<string, Record<string, string>>;
}

/** Both keys of a packet live until RETENTION_AFTER_EXPIRY_MS past the packet's own expiry. */
function expireWithPacket(pending: PendingWrites, packet: Packet): void {
  pending.expiring.set(packet.id, packet.expiresAtMs + RETENTION_AFTER_EXPIRY_MS);
}

export class RedisPacketCache implements PacketCache {
  private pending: PendingWrites | undefined;

  /** Every Redis error is reported here (logged and counted) and then treated as "no entry". */
  constructor(
    private readonly redis: Redis,
    private readonly onError: (error: unknown) => void = () => {},
  ) {}

  async peek(packetId: string, userId: string): Promise<CachedPacket | null> {
    if (this.redis.status !== 'ready') return null;
    try {
      const replies = await this.redis
        .pipeline()
        .hmget(factsKey(packetId), 'packet', 'status')
        .hget(claimsKey(packetId), userId)
        .exec();
      const facts = replies?.[0]?.[1] as (string | null)[] | undefined;
      const mine = replies?.[1]?.[1] as string | null | undefined;
      if (facts?.[0] == null || facts[1] == null) return null;
      const [amountFen, seq] = (mine ?? '').split(':').map(Number);
      return {
        packet: JSON.parse(facts[0]) as Packet,
        status: facts[1] as PacketStatus,
        mine: mine ? { amountFen: amountFen!, seq: seq! } : undefined,
      };
    } catch (error) {
      this.onError(error);
      return null;
    }
  }

  rememberPacket(packet: Packet, status: PacketStatus, claims: readonly { userId: string; amountFen: Fen; seq: number }[]): void {
    this.write((pending) => {
      pending.pipeline.hset(factsKey(packet.id), { packet: JSON.stringify(packet), status });
      if (claims.length > 0) {
        pending.pipeline.hset(claimsKey(packet.id), Object.fromEntries(claims.map((claim) => [claim.userId, `${claim.amountFen}:${claim.seq}`])));
      }
      expireWithPacket(pending, packet);
    });
  }

  rememberClaim(packet: Packet, claim: { userId: string; amountFen: Fen; seq: number }, finished: boolean): void {
    this.write((pending) => {
      let fields = pending.claims.get(packet.id);
      if (fields === undefined) pending.claims.set(packet.id, (fields = {}));
      fields[claim.userId] = `${claim.amountFen}:${claim.seq}`;
      if (finished) pending.pipeline.hset(factsKey(packet.id), 'status', 'finished');
      // Every write gives its keys their lifetime: a write may be the one that creates the key
      // (the first claim, or the cache was flushed), and a key without one would live forever.
      // Once per packet per pipeline, after all of its writes (write()).
      expireWithPacket(pending, packet);
    });
  }

  rememberExpired(packet: Packet): void {
    this.write((pending) => {
      pending.pipeline.hset(factsKey(packet.id), 'status', 'expired');
      expireWithPacket(pending, packet);
    });
  }

  /**
   * Write-behind, batched like the log: every cache write of one turn of the event loop (a
   * group commit settles many claims at once) goes out in one pipeline, one round trip.
   * A lost write only means a later request goes on to the actor.
   */
  private write(add: (pending: PendingWrites) => void): void {
    if (this.redis.status !== 'ready') return;
    if (this.pending === undefined) {
      this.pending = { pipeline: this.redis.pipeline(), expiring: new Map(), claims: new Map() };
      setImmediate(() => {
        const pending = this.pending!;
        this.pending = undefined;
        // A user's claim never changes, so its field may go after the packet's other writes.
        for (const [packetId, fields] of pending.claims) pending.pipeline.hset(claimsKey(packetId), fields);
        // Last, so that a key any write of this pipeline created gets its lifetime too.
        for (const [packetId, until] of pending.expiring) pending.pipeline.pexpireat(factsKey(packetId), until).pexpireat(claimsKey(packetId), until);
        pending.pipeline.exec().catch(this.onError);
      });
    }
    add(this.pending);
  }
}
