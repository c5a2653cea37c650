// Packet ids that carry their own proof of origin: `p_` + 12 random bytes + a 12-byte tag,
// HMAC-SHA256(key, random bytes) truncated, all base64url (32 characters after `p_`). Any node
// holding the key can tell an id it could have issued from one it could not, with one HMAC and
// no database round trip, so a flood of made-up ids never reaches an activation. Pure: the key
// is passed in (the composition root derives it from SEED_SECRET).
import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';

export const PACKET_ID_RANDOM_BYTES = 12;
/** 96 bits: guessing a valid tag takes 2^95 tries on average. */
export const PACKET_ID_TAG_BYTES = 12;
const BODY_CHARS = ((PACKET_ID_RANDOM_BYTES + PACKET_ID_TAG_BYTES) * 4) / 3;
const SIGNED = new RegExp(`^p_[A-Za-z0-9_-]{${BODY_CHARS}}$`);
/** Ids issued before the tag: `p_` + 12 random bytes (16 base64url characters). Still in stored data. */
const LEGACY = /^p_[A-Za-z0-9_-]{16}$/;

export type PacketIdCheck = 'signed' | 'legacy' | 'forged';

/** The tag key, made once: a KeyObject, not a string turned into a key on every HMAC. */
export type PacketIdKey = KeyObject;

/** The tag key for a deployment: its own derivation of SEED_SECRET, so a tag says nothing about a seed. */
export function packetIdKeyFrom(seedSecret: string): PacketIdKey {
  return createSecretKey(createHmac('sha256', seedSecret).update('hongbao packet id tag').digest());
}

function tagOf(key: PacketIdKey, random: Buffer): Buffer {
  return createHmac('sha256', key).update(random).digest().subarray(0, PACKET_ID_TAG_BYTES);
}

/** The id for these 12 random bytes (the caller draws them from a CSPRNG: the domain draws nothing). */
export function newPacketId(key: PacketIdKey, random: Buffer): string {
  if (random.length !== PACKET_ID_RANDOM_BYTES) throw new RangeError(`a packet id needs ${PACKET_ID_RANDOM_BYTES} random bytes`);
  return `p_${Buffer.concat([random, tagOf(key, random)]).toString('base64url')}`;
}

/**
 * `signed`: issued with this key. `legacy`: of the old untagged format, which may exist in stored
 * data and has to be looked up. `forged`: anything else; no packet can have it.
 */
export function checkPacketId(key: PacketIdKey, id: string): PacketIdCheck {
  if (LEGACY.test(id)) return 'legacy';
  if (!SIGNED.test(id)) return 'forged';
  const bytes = Buffer.from(id.slice(2), 'base64url');
  // base64url of 24 bytes has no padding, but its last character could carry stray bits: the
  // round trip makes the id canonical, so one packet never answers to two spellings.
  if (bytes.length !== PACKET_ID_RANDOM_BYTES + PACKET_ID_TAG_BYTES || bytes.toString('base64url') !== id.slice(2)) return 'forged';
  const random = bytes.subarray(0, PACKET_ID_RANDOM_BYTES);
  const tag = bytes.subarray(PACKET_ID_RANDOM_BYTES);
  return timingSafeEqual(tag, tagOf(key, random)) ? 'signed' : 'forged';
}
