// Hongbao-Signature (API.md, Notifications): `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`
// with the webhook's own secret — the shape of Stripe's, so receivers know how to check it.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'Hongbao-Signature';

export const newWebhookSecret = () => `whsec_${randomBytes(32).toString('base64url')}`;

export function signWebhook(secret: string, body: string, nowMs: number): string {
  const t = Math.floor(nowMs / 1000);
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

/** A receiver's check (and the tests'): the signature is this secret's, over this body, at most `toleranceS` old. */
export function verifyWebhook(secret: string, body: string, header: string, nowMs: number, toleranceS = 300): boolean {
  const match = /^t=(\d{1,12}),v1=([0-9a-f]{64})$/.exec(header);
  if (match === null) return false;
  const expected = createHmac('sha256', secret).update(`${match[1]}.${body}`).digest();
  if (!timingSafeEqual(expected, Buffer.from(match[2]!, 'hex'))) return false;
  return Math.abs(nowMs / 1000 - Number(match[1])) <= toleranceS;
}
