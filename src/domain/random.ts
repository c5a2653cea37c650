// Counter-based randomness: rand(seed, k) is a pure function of the packet's seed and the
// open's position, so any share can be recomputed for replay and audit, and an actor
// rebuilt after a crash needs no stored generator state.
import { createHmac } from 'node:crypto';

/** Four 32-bit words taken from HMAC-SHA256(seedSecret, packetId). */
export type Seed = readonly [number, number, number, number];

/**
 * The seed is keyed by a server secret: a seed derived from the public packet id alone
 * would let users compute the sequence and time their opens for the big share.
 */
export function packetSeed(seedSecret: string, packetId: string): Seed {
  const digest = createHmac('sha256', seedSecret).update(packetId).digest();
  return [digest.readUInt32LE(0), digest.readUInt32LE(4), digest.readUInt32LE(8), digest.readUInt32LE(12)];
}

/** A strong 32-bit finalizer (lowbias32 by Chris Wellons): every input bit affects every output bit. */
function mix32(input: number): number {
  let x = input >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

const TWO_POW_32 = 4294967296;

/** The k-th draw for a seed: a uniform integer in [0, 2^53). Integer arithmetic only. */
export function rand(seed: Seed, k: number): number {
  const high = mix32(seed[0] ^ mix32(seed[1] ^ k));
  const low = mix32(seed[2] ^ mix32(seed[3] ^ Math.imul(k, 0x9e3779b9) ^ high));
  return (high & 0x1fffff) * TWO_POW_32 + low;
}

/** A uniform integer in [min, max] from the k-th draw (bias below 2^-30 for ranges this small). */
export function randBetween(seed: Seed, k: number, min: number, max: number): number {
  return min + (rand(seed, k) % (max - min + 1));
}
