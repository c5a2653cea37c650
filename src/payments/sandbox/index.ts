// The sandbox payment provider as a service: an HTTP app (alone with npm run sandbox, or mounted
// at /sandbox of the engine), its signing key, its durable state and its notifier. The engine
// never calls into it directly: it talks to it over HTTP (SandboxProvider), as to a real one.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import type { Hono } from 'hono';
import { pino, type Logger } from 'pino';
import { exportPublicKey } from '../signing.js';
import { sandboxApp } from './app.js';
import { loadSigningKey } from './keys.js';
import { ATTEMPT_TIMEOUT_MS, DEFAULT_RETRY, Notifier, type RetryOptions } from './notifier.js';
import { SandboxStore } from './store.js';

/** The dev merchant key, shared by `npm run sandbox` and the engine's default config. Not a secret. */
export const SANDBOX_DEV_MERCHANT_KEY = 'hongbao-sandbox-dev-merchant-key';
/** `notify: "delayed"` waits this long by default (API.md: 3 s). */
export const DEFAULT_DELAYED_NOTIFY_MS = 3_000;

export type { RetryOptions } from './notifier.js';

export interface SandboxOptions {
  /** A folder (state in <dataDir>/sandbox/), or 'memory' (nothing survives close()). */
  readonly dataDir: string;
  /** The shared secret the merchant sends as `Authorization: Bearer <merchantKey>`. */
  readonly merchantKey: string;
  /** base64 PKCS8 DER Ed25519; else kept in <dataDir>/sandbox/keys.json (made on first start). */
  readonly privateKey?: string;
  readonly now?: () => number;
  readonly delayedNotifyMs?: number;
  readonly retry?: Partial<RetryOptions>;
  /** An attempt not answered within this counts as failed (default 5 s; tests use less). */
  readonly notifyTimeoutMs?: number;
  readonly logger?: Logger;
}

export interface Sandbox {
  readonly app: Hono;
  readonly publicKey: KeyObject;
  /** base64 SPKI DER, as GET /v1/public-key serves it. */
  readonly publicKeyBase64: string;
  /** Notifications not yet answered 200 (and not given up): for tests and for a clean stop. */
  pendingDeliveries(): number;
  /** Stops the timers and aborts deliveries in flight (they stay pending), then writes the state. */
  close(): Promise<void>;
}

export function createSandbox(options: SandboxOptions): Sandbox {
  if (options.merchantKey.length === 0) throw new Error('the sandbox needs a non-empty merchantKey');
  const retry: RetryOptions = { ...DEFAULT_RETRY, ...options.retry };
  if (!(retry.firstDelayMs >= 0 && retry.maxDelayMs >= retry.firstDelayMs && Number.isInteger(retry.attemptsMax) && retry.attemptsMax >= 1)) {
    throw new Error(`sandbox retry options make no sense: ${JSON.stringify(retry)}`);
  }
  const logger = options.logger ?? pino({ name: 'sandbox', level: 'warn' });
  const now = options.now ?? Date.now;

  let folder: string | undefined;
  if (options.dataDir !== 'memory') {
    folder = join(options.dataDir, 'sandbox');
    mkdirSync(folder, { recursive: true });
  }
  const keys = loadSigningKey(folder, options.privateKey);
  const publicKeyBase64 = exportPublicKey(keys.publicKey);
  const store = new SandboxStore(folder);
  const notifier = new Notifier({ store, privateKey: keys.privateKey, now, retry, logger, attemptTimeoutMs: options.notifyTimeoutMs ?? ATTEMPT_TIMEOUT_MS });

  let closed = false;
  const app = sandboxApp({
    store,
    notifier,
    privateKey: keys.privateKey,
    publicKeyBase64,
    merchantKey: options.merchantKey,
    now,
    delayedNotifyMs: options.delayedNotifyMs ?? DEFAULT_DELAYED_NOTIFY_MS,
    logger,
    isClosed: () => closed,
  });
  // Deliveries left unanswered by a previous run resume now, each at its own next attempt time.
  notifier.start();

  return {
    app,
    publicKey: keys.publicKey,
    publicKeyBase64,
    pendingDeliveries: () => notifier.pendingCount(),
    close: async () => {
      if (closed) return;
      closed = true;
      await notifier.close();
      await store.persist();
    },
  };
}
