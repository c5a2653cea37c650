// Environment → typed config, validated once at start (API.md, Configuration).
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { z } from 'zod';
import { DEFAULT_GREETING, DEFAULT_LIMITS, type Limits } from './domain/limits.js';
import { DEFAULT_OPEN_RATE, DEFAULT_REQUEST_RATE, DEFAULT_REQUESTS_IN_FLIGHT_MAX, type OpenRate } from './engine/rate-limit.js';
import { formatFen, MoneyFormatError, parseYuan, type Fen } from './money/money.js';

export const DEV_AUTH_SECRET = 'hongbao-dev-secret-change-me';
/** HS256 wants a key at least as long as its hash (RFC 7518 §3.2): 32 bytes. */
export const SECRET_BYTES_MIN = 32;
/** The longest a bearer token may live (exp − iat); longer ones are refused. */
export const DEFAULT_TOKEN_TTL_MAX_SECONDS = 7 * 24 * 3600;

/** Requests bodies are small JSON documents; anything bigger is a mistake or an attack. */
export const DEFAULT_BODY_BYTES_MAX = 16 * 1024;

/** Upper bounds of the settings themselves: a limit on everything, also on limits. */
const PACKET_COUNT_MAX_MAX = 1000;
const SHARE_FEN_MAX_MAX = 100_000_000; // 1,000,000.00 yuan per share
const GREETING_LENGTH_MAX_MAX = 1000;
const BODY_BYTES_MAX_MAX = 1024 * 1024;

const integer = (min: number, max: number, fallback: number) => {
  const message = `must be a whole number from ${min} to ${max}`;
  return z.coerce.number({ error: message }).int(message).min(min, message).max(max, message).default(fallback);
};

/** Money settings are yuan strings, as in the API ("0.01", "200.00"), parsed by parseYuan into fen. */
const yuanSetting = (fallback: Fen) =>
  z
    .string()
    .default(formatFen(fallback))
    .transform((text, context): Fen => {
      try {
        const fen = parseYuan(text);
        if (fen >= 1 && fen <= SHARE_FEN_MAX_MAX) return fen;
      } catch (error) {
        // Not yuan: reported below, where the issue's path names the setting.
        if (!(error instanceof MoneyFormatError)) throw error;
      }
      context.addIssue({
        code: 'custom',
        message: `must be yuan with at most two decimals from 0.01 to ${formatFen(SHARE_FEN_MAX_MAX)}, like "200.00"; got ${JSON.stringify(text)}`,
      });
      return z.NEVER;
    });

const environment = z.object({
  PORT: z.coerce.number().int().min(0).max(65_535).default(3000),
  HOST: z.string().min(1).default('127.0.0.1'),
  AUTH_SECRET: z.string().min(1).optional(),
  SEED_SECRET: z.string().min(1).optional(),
  DATA_DIR: z.string().min(1).default('./data'),
  DATABASE_URL: z.string().url().optional(),
  KAFKA_BROKERS: z.string().min(1).optional(),
  KAFKA_TOPIC: z.string().min(1).default('hongbao.packet-events'),
  KAFKA_PARTITIONS: z.coerce.number().int().min(1).max(1024).default(8),
  REDIS_URL: z.string().url().optional(),
  ROLE: z.enum(['all', 'engine', 'ledger']).default('all'),
  NODE_ID: z.string().trim().min(1).max(100).regex(/^[A-Za-z0-9._:-]+$/, 'letters, digits and . _ : - only').optional(),
  ADVERTISE_URL: z.string().url().optional(),
  PACKET_TTL_MS: z.coerce.number().int().positive().default(86_400_000),
  PACKET_COUNT_MAX: integer(1, PACKET_COUNT_MAX_MAX, DEFAULT_LIMITS.countMax),
  SHARE_AMOUNT_MIN: yuanSetting(DEFAULT_LIMITS.shareFenMin),
  SHARE_AMOUNT_MAX: yuanSetting(DEFAULT_LIMITS.shareFenMax),
  // At least the default greeting's length, or every send without a greeting would be refused.
  GREETING_LENGTH_MAX: integer([...DEFAULT_GREETING].length, GREETING_LENGTH_MAX_MAX, DEFAULT_LIMITS.greetingLengthMax),
  OPEN_BURST: integer(1, 1_000_000, DEFAULT_OPEN_RATE.burst),
  OPENS_PER_SECOND: z.coerce
    .number({ error: 'must be a number above 0, at most 1000000' })
    .positive('must be a number above 0, at most 1000000')
    .max(1_000_000, 'must be a number above 0, at most 1000000')
    .default(DEFAULT_OPEN_RATE.perSecond),
  REQUESTS_BURST: integer(1, 1_000_000, DEFAULT_REQUEST_RATE.burst),
  REQUESTS_PER_SECOND: z.coerce
    .number({ error: 'must be a number above 0, at most 1000000' })
    .positive('must be a number above 0, at most 1000000')
    .max(1_000_000, 'must be a number above 0, at most 1000000')
    .default(DEFAULT_REQUEST_RATE.perSecond),
  REQUESTS_IN_FLIGHT_MAX: integer(1, 100_000, DEFAULT_REQUESTS_IN_FLIGHT_MAX),
  BODY_BYTES_MAX: integer(1024, BODY_BYTES_MAX_MAX, DEFAULT_BODY_BYTES_MAX),
  NODE_ENV: z.string().optional(),
  TOKEN_TTL_MAX_SECONDS: integer(60, 366 * 24 * 3600, DEFAULT_TOKEN_TTL_MAX_SECONDS),
  SANDBOX_URL: z.string().url().optional(),
  SANDBOX_MERCHANT_KEY: z.string().min(1).optional(),
  SANDBOX_PUBLIC_KEY: z.string().min(1).optional(),
  SANDBOX_PRIVATE_KEY: z.string().min(1).optional(),
  PAYMENT_TIMEOUT_MS: integer(1_000, 7 * 24 * 3600 * 1000, 900_000),
  PAYMENT_RESWEEP_MS: integer(0, 3600 * 1000, 5_000),
  WEBHOOK_ALLOW_PRIVATE: z.enum(['true', 'false']).optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export interface Config {
  readonly port: number;
  readonly host: string;
  readonly authSecret: string;
  readonly seedSecret: string;
  readonly dataDir: string;
  readonly databaseUrl: string | undefined;
  readonly kafkaBrokers: string[] | undefined;
  readonly kafkaTopic: string;
  readonly kafkaPartitions: number;
  readonly redisUrl: string | undefined;
  /** all: engine + ledger consumer; engine: no consumer; ledger: consumer only (no engine traffic expected). */
  readonly role: 'all' | 'engine' | 'ledger';
  /** This node's unique name in a cluster (default host name + port). */
  readonly nodeId: string;
  /** How the other nodes reach this one, for forwarded requests (default http://HOST:PORT). */
  readonly advertiseUrl: string;
  readonly packetTtlMs: number;
  /** The product limits (for Hongbao and the OpenAPI document); limits.ttlMs = packetTtlMs. */
  readonly limits: Limits;
  /** The per-user open rate limit (for the rate limiters and the document). */
  readonly openRate: OpenRate;
  /** The per-user limit on every other authenticated request (a bucket shared by those routes). */
  readonly requestRate: OpenRate;
  /** Requests of one user in progress at once (every authenticated route). */
  readonly requestsInFlightMax: number;
  /** Largest request body on the routes that take one (413 past it). */
  readonly bodyBytesMax: number;
  /** Bearer tokens must carry `exp`, at most this far after their `iat` (or after now). */
  readonly tokenTtlMaxSeconds: number;
  /**
   * The sandbox payment provider: its base URL (unset: this process mounts its own at /sandbox
   * and uses that), the merchant key (unset: the sandbox's dev key) and its public key (unset:
   * fetched from the sandbox once and pinned).
   */
  readonly sandbox: {
    readonly url: string | undefined;
    readonly merchantKey: string | undefined;
    readonly publicKey: string | undefined;
    /** The mounted sandbox's signing key (unset: made on first start into DATA_DIR). */
    readonly privateKey: string | undefined;
  };
  /** How long a provider payment may stay unconfirmed before the server asks the provider. */
  readonly paymentTimeoutMs: number;
  /** The second crediting sweep, this long after a packet's funds are confirmed. */
  readonly paymentResweepMs: number;
  /** Whether webhooks may point at loopback and private addresses (default: yes, but not in production). */
  readonly webhooksAllowPrivate: boolean;
  readonly production: boolean;
  readonly logLevel: string;
  /** Why the config is not fit for production, shown as warnings at start. */
  readonly warnings: string[];
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = environment.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ');
    throw new ConfigError(`invalid environment: ${problems}`);
  }
  const values = parsed.data;
  // `Production`, `PRODUCTION ` and `production` all mean production: never fall back to dev by a typo of case.
  const production = values.NODE_ENV?.trim().toLowerCase() === 'production';
  const warnings: string[] = [];
  if (values.AUTH_SECRET === undefined) {
    if (production) throw new ConfigError('AUTH_SECRET is required when NODE_ENV=production');
    warnings.push('AUTH_SECRET is not set: using the public dev secret; anyone can mint tokens');
  }
  if (production) checkProductionSecrets(values.AUTH_SECRET, values.SEED_SECRET);
  if (values.SHARE_AMOUNT_MIN > values.SHARE_AMOUNT_MAX) {
    throw new ConfigError(
      `invalid environment: SHARE_AMOUNT_MIN (${formatFen(values.SHARE_AMOUNT_MIN)}) must not be above SHARE_AMOUNT_MAX (${formatFen(values.SHARE_AMOUNT_MAX)})`,
    );
  }
  const authSecret = values.AUTH_SECRET ?? DEV_AUTH_SECRET;
  return {
    port: values.PORT,
    host: values.HOST,
    authSecret,
    // Dev only: derived, so lucky amounts are still unpredictable from the packet id alone.
    seedSecret: values.SEED_SECRET ?? createHash('sha256').update(`seed:${authSecret}`).digest('hex'),
    dataDir: values.DATA_DIR,
    databaseUrl: values.DATABASE_URL,
    kafkaBrokers: values.KAFKA_BROKERS?.split(',').map((broker) => broker.trim()).filter(Boolean),
    kafkaTopic: values.KAFKA_TOPIC,
    kafkaPartitions: values.KAFKA_PARTITIONS,
    redisUrl: values.REDIS_URL,
    role: values.ROLE,
    nodeId: values.NODE_ID ?? `${hostname()}-${values.PORT}`,
    advertiseUrl: (values.ADVERTISE_URL ?? `http://${values.HOST}:${values.PORT}`).replace(/\/+$/, ''),
    packetTtlMs: values.PACKET_TTL_MS,
    limits: {
      countMax: values.PACKET_COUNT_MAX,
      shareFenMin: values.SHARE_AMOUNT_MIN,
      shareFenMax: values.SHARE_AMOUNT_MAX,
      greetingLengthMax: values.GREETING_LENGTH_MAX,
      ttlMs: values.PACKET_TTL_MS,
    },
    openRate: { burst: values.OPEN_BURST, perSecond: values.OPENS_PER_SECOND },
    requestRate: { burst: values.REQUESTS_BURST, perSecond: values.REQUESTS_PER_SECOND },
    requestsInFlightMax: values.REQUESTS_IN_FLIGHT_MAX,
    bodyBytesMax: values.BODY_BYTES_MAX,
    tokenTtlMaxSeconds: values.TOKEN_TTL_MAX_SECONDS,
    sandbox: { url: values.SANDBOX_URL?.replace(/\/+$/, ''), merchantKey: values.SANDBOX_MERCHANT_KEY, publicKey: values.SANDBOX_PUBLIC_KEY, privateKey: values.SANDBOX_PRIVATE_KEY },
    paymentTimeoutMs: values.PAYMENT_TIMEOUT_MS,
    paymentResweepMs: values.PAYMENT_RESWEEP_MS,
    webhooksAllowPrivate: values.WEBHOOK_ALLOW_PRIVATE === undefined ? !production : values.WEBHOOK_ALLOW_PRIVATE === 'true',
    production,
    logLevel: values.LOG_LEVEL,
    warnings,
  };
}

/** In production a secret is private, long enough, and not one this repository publishes. */
function checkProductionSecrets(authSecret: string | undefined, seedSecret: string | undefined): void {
  for (const [name, secret] of [['AUTH_SECRET', authSecret], ['SEED_SECRET', seedSecret]] as const) {
    if (secret === undefined) throw new ConfigError(`${name} is required when NODE_ENV=production`);
    if (secret === DEV_AUTH_SECRET) throw new ConfigError(`${name} is the public dev secret; set a private one when NODE_ENV=production`);
    if (Buffer.byteLength(secret, 'utf8') < SECRET_BYTES_MIN) {
      throw new ConfigError(`${name} must be at least ${SECRET_BYTES_MIN} bytes when NODE_ENV=production (e.g. openssl rand -hex 32)`);
    }
  }
  if (authSecret === seedSecret) throw new ConfigError('AUTH_SECRET and SEED_SECRET must differ when NODE_ENV=production');
}
