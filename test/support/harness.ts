// Starts a whole service for a test: embedded PGlite in memory by default, or a fresh
// database on the Postgres server when TEST_DATABASE_URL/DATABASE_URL is set for services runs.
import { pino } from 'pino';
import { sql } from 'drizzle-orm';
import { DEFAULT_BODY_BYTES_MAX, DEFAULT_TOKEN_TTL_MAX_SECONDS } from '../../src/config.js';
import { startHongbao, type ComposeOptions, type Hongbao } from '../../src/app/compose.js';
import { DEFAULT_LIMITS } from '../../src/domain/limits.js';
import { ManualClock, type Clock } from '../../src/engine/clock.js';
import { createApp } from '../../src/http/app.js';
import { issueToken } from '../../src/http/auth.js';
import { rowsOf } from '../../src/ledger/database.js';
import { pgliteTemplate } from './pglite-template.js';
import type { AddressInfo } from 'node:net';
import type { KeyObject } from 'node:crypto';
import { createAdaptorServer } from '@hono/node-server';
import { SANDBOX_MOUNT_PATH } from '../../src/app/compose.js';
import { createSandbox, SANDBOX_DEV_MERCHANT_KEY, type Sandbox, type SandboxOptions } from '../../src/payments/sandbox/index.js';
import { exportPrivateKey, generateSigningKeyPair } from '../../src/payments/signing.js';
import { freshServerDatabase } from './server-database.js';

export const TEST_SECRET = 'test-auth-secret';
export const silentLogger = pino({ level: 'silent' });

export interface Harness {
  readonly hongbao: Hongbao;
  readonly app: ReturnType<typeof createApp>;
  readonly clock: Clock;
  token(userId: string, admin?: boolean): Promise<string>;
  /** app.request with auth and JSON handled. */
  call(method: string, path: string, options?: { user?: string; admin?: boolean; body?: unknown; headers?: Record<string, string> }): Promise<{ status: number; body: any }>;
  /** Waits until the ledger consumer has applied everything the log holds. */
  settle(): Promise<void>;
  /** Σ wallet balances + Σ escrow balances, what was deposited, and what providers paid in. */
  money(): Promise<{ wallets: number; escrow: number; deposited: number; providers: number; book: number }>;
  /** With `payments`: the engine on a real port (the sandbox notifies it there), and the sandbox mounted at /sandbox of it. */
  readonly url: string | undefined;
  readonly sandbox: (Sandbox & { readonly url: string; readonly privateKey: KeyObject }) | undefined;
  stop(): Promise<void>;
}

export interface HarnessOptions extends Partial<ComposeOptions> {
  /** Shorthand for limits.ttlMs. */
  readonly packetTtlMs?: number;
  readonly bodyBytesMax?: number;
  /**
   * Serve the app on a real port with the sandbox provider mounted at /sandbox, as `npm start`
   * does: the engine reaches the sandbox, and the sandbox notifies the engine, over HTTP.
   */
  readonly withSandbox?: { readonly sandbox?: Partial<SandboxOptions>; readonly timeoutMs?: number; readonly resweepMs?: number };
}

/**
 * With HONGBAO_TEST_SERVICES=1 (npm run test:services) the same suites run on the real
 * services: a fresh database on the Postgres server, a fresh Kafka topic, and Redis.
 */
async function servicesOptions(): Promise<{ options: Partial<ComposeOptions>; cleanup: () => Promise<void> }> {
  if (process.env.HONGBAO_TEST_SERVICES !== '1') return { options: {}, cleanup: async () => {} };
  const server = await freshServerDatabase(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test');
  const suffix = `${process.pid}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6)}`;
  return {
    options: {
      databaseUrl: server.url,
      redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      kafka: {
        brokers: (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(','),
        topic: `hongbao-test-${suffix}`,
        partitions: 4,
        clientId: 'hongbao-test',
      },
    },
    cleanup: () => server.drop(),
  };
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const clock = options.clock ?? { now: () => Date.now() };
  const services = await servicesOptions();
  const { packetTtlMs, bodyBytesMax, withSandbox, ...composeOptions } = options;
  // A real port first (its URL is the notify URL the orders carry), answering 503 until composed.
  let serve: (request: Request) => Response | Promise<Response> = () => new Response('starting', { status: 503 });
  const server = withSandbox === undefined ? undefined : createAdaptorServer({ fetch: (request) => serve(request) });
  if (server !== undefined) await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const url = server === undefined ? undefined : `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const keys = generateSigningKeyPair();
  const sandbox =
    withSandbox === undefined
      ? undefined
      : createSandbox({
          dataDir: 'memory',
          merchantKey: SANDBOX_DEV_MERCHANT_KEY,
          privateKey: exportPrivateKey(keys.privateKey),
          retry: { firstDelayMs: 50, maxDelayMs: 400, attemptsMax: 30 },
          delayedNotifyMs: 300,
          logger: silentLogger,
          ...withSandbox.sandbox,
        });
  const hongbao = await startHongbao({
    dataDir: 'memory',
    loadDataDir: pgliteTemplate(),
    seedSecret: 'test-seed-secret',
    logger: silentLogger,
    runJobs: false,
    ...services.options,
    ...composeOptions,
    // Suites about other things are not shaped by the per-user request bucket; the suites about
    // it (http-hostile-users, redis) set their own.
    requestRate: options.requestRate ?? { burst: 1_000_000, perSecond: 1_000_000 },
    limits: { ...DEFAULT_LIMITS, ...(packetTtlMs === undefined ? {} : { ttlMs: packetTtlMs }), ...options.limits },
    clock,
    ...(withSandbox !== undefined
      ? {
          payments: {
            sandbox: { url: `${url}${SANDBOX_MOUNT_PATH}`, merchantKey: SANDBOX_DEV_MERCHANT_KEY },
            engineUrl: url!,
            timeoutMs: withSandbox.timeoutMs ?? 900_000,
            resweepMs: withSandbox.resweepMs ?? 5_000,
          },
        }
      : {}),
  });
  const app = createApp(hongbao.service, { authSecret: TEST_SECRET, logger: silentLogger, bodyBytesMax: bodyBytesMax ?? DEFAULT_BODY_BYTES_MAX,
    tokenTtlMaxSeconds: DEFAULT_TOKEN_TTL_MAX_SECONDS,
  });
  if (sandbox !== undefined) app.route(SANDBOX_MOUNT_PATH, sandbox.app);
  serve = app.fetch;
  const tokens = new Map<string, string>();
  const token = async (userId: string, admin = false) => {
    const key = `${userId}:${admin}`;
    if (!tokens.has(key)) tokens.set(key, await issueToken(TEST_SECRET, userId, { admin }));
    return tokens.get(key)!;
  };
  return {
    hongbao,
    app,
    clock,
    token,
    url,
    sandbox: sandbox === undefined ? undefined : Object.assign(sandbox, { url: `${url}${SANDBOX_MOUNT_PATH}`, privateKey: keys.privateKey }),
    async call(method, path, callOptions = {}) {
      const headers: Record<string, string> = { ...(callOptions.headers ?? {}) };
      if (callOptions.user !== undefined) headers.authorization = `Bearer ${await token(callOptions.user, callOptions.admin)}`;
      let body: string | undefined;
      if (callOptions.body !== undefined) {
        headers['content-type'] ??= 'application/json';
        body = typeof callOptions.body === 'string' ? callOptions.body : JSON.stringify(callOptions.body);
      }
      const response = await app.request(path, { method, headers, ...(body !== undefined ? { body } : {}) });
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch (error) {
        if (!(error instanceof SyntaxError)) throw error; // not JSON (metrics): keep the text
      }
      return { status: response.status, body: parsed };
    },
    async settle() {
      await hongbao.consumer.waitAppliedAll(await hongbao.log.heads(), 30_000);
    },
    async money() {
      const rows = await rowsOf<{ kind: string; sum: string | number }>(
        hongbao.database,
        sql`select kind, sum(balance_fen) as sum from accounts group by kind`,
      );
      const of = (kind: string) => Number(rows.find((row) => row.kind === kind)?.sum ?? 0);
      return {
        wallets: of('wallet'),
        escrow: of('escrow'),
        deposited: -of('external'),
        providers: 0 - of('provider'),
        book: rows.reduce((sum, row) => sum + Number(row.sum), 0),
      };
    },
    async stop() {
      await sandbox?.close();
      if (server !== undefined) {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        // Kept-alive connections (the sandbox's and the engine's clients) would hold close() open.
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
        await closed;
      }
      await hongbao.stop();
      await services.cleanup();
    },
  };
}

export { ManualClock };
