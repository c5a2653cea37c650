// The Hongbao-Forwarded header: a node that passes a request to a packet's owner signs it, so
// the owner may skip admission (the first node took the caller's tokens already) without
// letting a caller skip it by sending the header themselves.
//
//   Hongbao-Forwarded: t=<unix ms>,from=<node id>,v1=<hex HMAC-SHA256>
//
// The MAC covers t, from, the method, the path and the caller's Authorization header, one per
// line (none of them may hold a newline), so a signature cannot be moved to another request.
import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';

export const FORWARDED_HEADER = 'hongbao-forwarded';
/** How far a signature's time may be from the receiver's clock, either way. */
export const FORWARD_CLOCK_SKEW_MS_MAX = 30_000;

/** What the MAC covers besides the time and the sender. */
export interface ForwardedRequest {
  readonly method: string;
  readonly path: string;
  readonly authorization: string;
}

export type ForwardVerdict = { ok: true; from: string } | { ok: false; reason: string };

/** NODE_ID's own pattern (config.ts); the digits bound the time to a sane length. */
const HEADER_PATTERN = /^t=(\d{1,16}),from=([A-Za-z0-9._:-]{1,100}),v1=([0-9a-f]{64})$/;

/**
 * The forwarding key, derived from the bearer-token secret under its own label: every node
 * already shares that secret, and a forwarding MAC can never be read as a token signature.
 */
export function forwardKey(authSecret: string): KeyObject {
  return createSecretKey(createHmac('sha256', authSecret).update('hongbao forward v1').digest());
}

function mac(key: KeyObject, timeMs: number, from: string, request: ForwardedRequest): Buffer {
  return createHmac('sha256', key).update(`${timeMs}\n${from}\n${request.method.toUpperCase()}\n${request.path}\n${request.authorization}`).digest();
}

export function signForward(key: KeyObject, from: string, request: ForwardedRequest, nowMs: number): string {
  return `t=${nowMs},from=${from},v1=${mac(key, nowMs, from, request).toString('hex')}`;
}

export function verifyForward(key: KeyObject, header: string, request: ForwardedRequest, nowMs: number): ForwardVerdict {
  const match = HEADER_PATTERN.exec(header);
  if (match === null) return { ok: false, reason: 'is malformed' };
  const timeMs = Number(match[1]);
  const from = match[2]!;
  // Checked before the time, so that a guess learns nothing from which check failed.
  const expected = mac(key, timeMs, from, request);
  if (!timingSafeEqual(expected, Buffer.from(match[3]!, 'hex'))) return { ok: false, reason: 'has a bad signature' };
  if (Math.abs(nowMs - timeMs) > FORWARD_CLOCK_SKEW_MS_MAX) return { ok: false, reason: `is stale (more than ${FORWARD_CLOCK_SKEW_MS_MAX} ms from this node's clock)` };
  return { ok: true, from };
}
