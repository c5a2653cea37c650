// The engine's side of the sandbox: a PaymentProvider that talks to the sandbox service only over
// HTTP (as it would to WeChat Pay or Alipay) and believes nothing it has not verified with the
// pinned public key. Calls reject with a SandboxRequestError saying what was asked and what came
// back; the verifiers answer {ok: false, reason} for anything wrong and never throw.
import type { KeyObject } from 'node:crypto';
import { z } from 'zod';
import { formatFen } from '../money/money.js';
import {
  NOTIFICATION_WINDOW_MS,
  type CreatedOrder,
  type CreateOrderRequest,
  type NotificationHeaders,
  type OrderState,
  type PaymentProvider,
  type Verdict,
  type VerifiedNotification,
  type VerifiedReturn,
} from './provider.js';
import { orderAmount } from './yuan.js';
import { importPublicKey, verifyNotificationSignature, verifyReturnPayload } from './signing.js';

export const DEFAULT_SANDBOX_TIMEOUT_MS = 5_000;

/** Header names as the sandbox sends them (matched case-insensitively by any HTTP stack). */
export const SANDBOX_TIMESTAMP_HEADER = 'X-Sandbox-Timestamp';
export const SANDBOX_NONCE_HEADER = 'X-Sandbox-Nonce';
export const SANDBOX_SIGNATURE_HEADER = 'X-Sandbox-Signature';

/** Bounds on what a verifier reads: a notification body is a few hundred bytes. */
const NOTIFICATION_BODY_CHARS_MAX = 16 * 1024;
const TIMESTAMP_PATTERN = /^[0-9]{1,12}$/;
const NONCE_PATTERN = /^[A-Za-z0-9_-]{8,128}$/;

export interface SandboxProviderOptions {
  /** Where the sandbox answers, with its prefix when mounted: http://127.0.0.1:3000/sandbox. */
  readonly baseUrl: string;
  readonly merchantKey: string;
  /** The pinned key: a KeyObject, or base64 SPKI DER as GET /v1/public-key serves it. */
  readonly publicKey: KeyObject | string;
  /** Per call, connection to last byte. */
  readonly timeoutMs?: number;
}

/** A call the sandbox did not answer as asked; `status` and `code` are set when it did answer. */
export class SandboxRequestError extends Error {
  override readonly name = 'SandboxRequestError';

  constructor(
    message: string,
    readonly status?: number,
    readonly code?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const yuanAmount = orderAmount;

const createdAnswer = z.object({ orderId: z.string(), payToken: z.string().min(1), amount: yuanAmount, expiresAt: z.iso.datetime({ offset: true }) });
const stateAnswer = z.object({ orderId: z.string(), status: z.enum(['unpaid', 'paid', 'failed']), amount: yuanAmount, closed: z.boolean() });
const returnContent = z.object({ orderId: z.string().min(1), outcome: z.enum(['success', 'fail']), amount: yuanAmount, at: z.string() });
const notificationBody = z.object({
  orderId: z.string().min(1),
  transactionId: z.string().min(1),
  status: z.enum(['paid', 'failed']),
  amount: yuanAmount,
  at: z.string(),
});
const errorAnswer = z.object({ error: z.object({ code: z.string(), message: z.string() }) });
const publicKeyAnswer = z.object({ publicKey: z.string(), algorithm: z.literal('ed25519') });

const trimSlash = (url: string) => url.replace(/\/+$/, '');
const issuesOf = (error: z.ZodError) => error.issues.map((issue) => `${issue.path.join('.') || 'body'}: ${issue.message}`).join('; ');

/** One JSON call; the answer's body parsed, or a SandboxRequestError naming `what`. */
async function call(url: string, what: string, init: RequestInit, timeoutMs: number): Promise<{ status: number; json: unknown }> {
  let response: Response;
  let text: string;
  try {
    response = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    text = await response.text();
  } catch (error) {
    const reason = (error as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (error as Error).message;
    throw new SandboxRequestError(`sandbox ${what}: ${url} not reached (${reason})`, undefined, undefined, { cause: error });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new SandboxRequestError(`sandbox ${what}: answered ${response.status} with a body that is not JSON`, response.status);
  }
  if (!response.ok) {
    const refusal = errorAnswer.safeParse(json);
    const code = refusal.success ? refusal.data.error.code : undefined;
    const message = refusal.success ? refusal.data.error.message : text.slice(0, 200);
    throw new SandboxRequestError(`sandbox ${what}: refused with ${response.status}${code === undefined ? '' : ` ${code}`}: ${message}`, response.status, code);
  }
  return { status: response.status, json };
}

function shaped<Schema extends z.ZodType>(schema: Schema, json: unknown, what: string, status: number): z.infer<Schema> {
  const result = schema.safeParse(json);
  if (!result.success) throw new SandboxRequestError(`sandbox ${what}: unexpected answer (${issuesOf(result.error)})`, status);
  return result.data;
}

export class SandboxProvider implements PaymentProvider {
  readonly name = 'sandbox';
  private readonly baseUrl: string;
  private readonly merchantKey: string;
  private readonly publicKey: KeyObject;
  private readonly timeoutMs: number;

  constructor(options: SandboxProviderOptions) {
    this.baseUrl = trimSlash(options.baseUrl);
    this.merchantKey = options.merchantKey;
    this.publicKey = typeof options.publicKey === 'string' ? importPublicKey(options.publicKey) : options.publicKey;
    if (this.publicKey.asymmetricKeyType !== 'ed25519' || this.publicKey.type !== 'public') throw new Error('the sandbox public key must be an ed25519 public key');
    this.timeoutMs = options.timeoutMs ?? DEFAULT_SANDBOX_TIMEOUT_MS;
  }

  private merchantCall(path: string, what: string, method: 'GET' | 'POST', body?: unknown) {
    const headers: Record<string, string> = { authorization: `Bearer ${this.merchantKey}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    return call(`${this.baseUrl}${path}`, what, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) }, this.timeoutMs);
  }

  async createOrder(request: CreateOrderRequest): Promise<CreatedOrder> {
    const what = `createOrder ${request.orderId}`;
    const { status, json } = await this.merchantCall('/v1/orders', what, 'POST', {
      orderId: request.orderId,
      amount: formatFen(request.amountFen),
      description: request.description,
      notifyUrl: request.notifyUrl,
      expiresAt: new Date(request.expiresAtMs).toISOString(),
    });
    const created = shaped(createdAnswer, json, what, status);
    // The answer must be the order we asked for: a mismatch is a broken provider, not a payment.
    if (created.orderId !== request.orderId || created.amount !== request.amountFen) {
      throw new SandboxRequestError(`sandbox ${what}: answered for order ${created.orderId} of ${formatFen(created.amount)}`, status);
    }
    return { orderId: created.orderId, payToken: created.payToken, amountFen: created.amount, expiresAtMs: Date.parse(created.expiresAt) };
  }

  async queryOrder(orderId: string): Promise<OrderState> {
    return this.orderState(`/v1/orders/${encodeURIComponent(orderId)}`, `queryOrder ${orderId}`, 'GET', orderId);
  }

  async closeOrder(orderId: string): Promise<OrderState> {
    return this.orderState(`/v1/orders/${encodeURIComponent(orderId)}/close`, `closeOrder ${orderId}`, 'POST', orderId);
  }

  private async orderState(path: string, what: string, method: 'GET' | 'POST', orderId: string): Promise<OrderState> {
    const { status, json } = await this.merchantCall(path, what, method);
    const state = shaped(stateAnswer, json, what, status);
    if (state.orderId !== orderId) throw new SandboxRequestError(`sandbox ${what}: answered for order ${state.orderId}`, status);
    return { orderId: state.orderId, status: state.status, amountFen: state.amount, closed: state.closed };
  }

  verifyReturn(payload: string): Verdict<VerifiedReturn> {
    const opened = verifyReturnPayload(this.publicKey, payload);
    if (!opened.ok) return opened;
    const content = returnContent.safeParse(opened.content);
    if (!content.success) return { ok: false, reason: `the return payload is signed but not of the expected shape (${issuesOf(content.error)})` };
    return { ok: true, value: { orderId: content.data.orderId, outcome: content.data.outcome, amountFen: content.data.amount } };
  }

  verifyNotification(headers: NotificationHeaders, body: string, nowMs: number): Verdict<VerifiedNotification> {
    try {
      return this.checkNotification(headers, body, nowMs);
    } catch (error) {
      // A headers function that throws, or anything else unforeseen: still a refusal, not a crash.
      return { ok: false, reason: `the notification cannot be read: ${(error as Error).message}` };
    }
  }

  private checkNotification(headers: NotificationHeaders, body: string, nowMs: number): Verdict<VerifiedNotification> {
    const timestamp = headers(SANDBOX_TIMESTAMP_HEADER);
    const nonce = headers(SANDBOX_NONCE_HEADER);
    const signature = headers(SANDBOX_SIGNATURE_HEADER);
    if (typeof timestamp !== 'string' || typeof nonce !== 'string' || typeof signature !== 'string') {
      return { ok: false, reason: `missing ${SANDBOX_TIMESTAMP_HEADER}, ${SANDBOX_NONCE_HEADER} or ${SANDBOX_SIGNATURE_HEADER}` };
    }
    if (!TIMESTAMP_PATTERN.test(timestamp)) return { ok: false, reason: `${SANDBOX_TIMESTAMP_HEADER} must be unix seconds` };
    if (!NONCE_PATTERN.test(nonce)) return { ok: false, reason: `${SANDBOX_NONCE_HEADER} must be 8–128 characters of [A-Za-z0-9_-]` };
    if (typeof body !== 'string' || body.length > NOTIFICATION_BODY_CHARS_MAX) return { ok: false, reason: 'the body must be a string of at most 16 KiB' };
    if (!verifyNotificationSignature(this.publicKey, timestamp, nonce, body, signature)) return { ok: false, reason: 'the signature does not verify' };
    // Checked after the signature (which covers the timestamp), before anything is believed.
    const timestampMs = Number(timestamp) * 1000;
    if (!Number.isFinite(nowMs) || Math.abs(nowMs - timestampMs) > NOTIFICATION_WINDOW_MS) {
      return { ok: false, reason: `the timestamp is more than ${NOTIFICATION_WINDOW_MS / 60_000} minutes from now` };
    }
    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      return { ok: false, reason: 'the body is signed but not JSON' };
    }
    const parsed = notificationBody.safeParse(json);
    if (!parsed.success) return { ok: false, reason: `the body is signed but not of the expected shape (${issuesOf(parsed.error)})` };
    const { orderId, status, amount, transactionId } = parsed.data;
    return { ok: true, value: { orderId, status, amountFen: amount, transactionId, nonce, timestampMs } };
  }
}

/** GET {baseUrl}/v1/public-key: how a dev engine pins the sandbox's key (trust on first use). */
export async function fetchSandboxPublicKey(baseUrl: string, timeoutMs = DEFAULT_SANDBOX_TIMEOUT_MS): Promise<KeyObject> {
  const what = 'fetchSandboxPublicKey';
  const { status, json } = await call(`${trimSlash(baseUrl)}/v1/public-key`, what, { method: 'GET' }, timeoutMs);
  const answer = shaped(publicKeyAnswer, json, what, status);
  try {
    return importPublicKey(answer.publicKey);
  } catch (error) {
    throw new SandboxRequestError(`sandbox ${what}: ${(error as Error).message}`, status, undefined, { cause: error });
  }
}
