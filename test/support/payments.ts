// What the payment suites share: paying in the sandbox as the payer's app does, forging (or
// faithfully signing) the provider's messages with the sandbox key the harness made, and waiting
// for the packet to reach a state.
import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import { signNotification, signReturnPayload } from '../../src/payments/signing.js';
import type { Harness } from './harness.js';
import type { Reply } from './http-client.js';

export type PayOutcome = 'success' | 'fail' | 'reversed';
export type NotifyMode = 'normal' | 'delayed' | 'duplicate' | 'never';

/** The payer's app on the sandbox's payment sheet: returns the signed return payload. */
export async function payInSandbox(h: Harness, payment: { orderId: string; payToken: string }, outcome: PayOutcome, notify: NotifyMode): Promise<string> {
  const response = await fetch(`${h.sandbox!.url}/v1/pay`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ orderId: payment.orderId, payToken: payment.payToken, outcome, notify }),
  });
  const body = (await response.json()) as { returnPayload: string };
  expect(response.status, JSON.stringify(body)).toBe(200);
  return body.returnPayload;
}

export function forwardReturn(h: Harness, packetId: string, user: string, returnPayload: string): Promise<Reply> {
  return h.call('POST', `/v1/packets/${packetId}/payment/return`, { user, body: { returnPayload } });
}

/** A notification as the sandbox would sign it (or, with `key`, as someone else would). */
export function signedNotification(
  h: Harness,
  content: { orderId: string; status: 'paid' | 'failed'; amount: string },
  options: { timestampSeconds?: number; nonce?: string; key?: Parameters<typeof signNotification>[0] } = {},
) {
  const body = JSON.stringify({ ...content, transactionId: `tx-${content.orderId}`, at: new Date().toISOString() });
  const timestamp = String(options.timestampSeconds ?? Math.floor(Date.now() / 1000));
  const nonce = options.nonce ?? randomBytes(16).toString('hex');
  const signature = signNotification(options.key ?? h.sandbox!.privateKey, timestamp, nonce, body);
  return { body, headers: { 'x-sandbox-timestamp': timestamp, 'x-sandbox-nonce': nonce, 'x-sandbox-signature': signature, 'content-type': 'application/json' } };
}

export function postNotification(h: Harness, notification: { body: string; headers: Record<string, string> }): Promise<Reply> {
  return h.call('POST', '/v1/payments/sandbox/notify', { body: notification.body, headers: notification.headers });
}

/** A return payload signed with the sandbox key: what the payment sheet would have given the app. */
export function signedReturn(h: Harness, content: { orderId: string; outcome: 'success' | 'fail'; amount: string }): string {
  return signReturnPayload(h.sandbox!.privateKey, { ...content, at: new Date().toISOString() });
}

/** Polls the sender's view of the packet until its status is `status` (a notification arrives on its own time). */
export async function waitForStatus(h: Harness, packetId: string, sender: string, status: string, timeoutMs = 10_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reply = await h.call('GET', `/v1/packets/${packetId}`, { user: sender });
    if (reply.body?.packet?.status === status) return reply.body;
    if (Date.now() > deadline) throw new Error(`packet ${packetId} is ${reply.body?.packet?.status}, not ${status}, after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
