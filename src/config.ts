// Environment → typed config, validated once at start (API.md, Configuration).
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { DEFAULT_LIMITS, type Limits } from './domain/limits.js';
import { DEFAULT_OPEN_RATE, type OpenRate } from './engine/rate-limit.js';

export const DEV_AUTH_SECRET = 'hongbao-dev-secret-change-me';

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
  PACKET_TTL_MS: z.coerce.number().int().positive().default(86_400_000),
  NODE_ENV: z.string().optional(),
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
  readonly packetTtlMs: number;
  readonly limits: Limits;
  readonly openRate: OpenRate;
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
  const production = values.NODE_ENV === 'production';
  const warnings: string[] = [];
  if (values.AUTH_SECRET === undefined) {
    if (production) throw new ConfigError('AUTH_SECRET is required when NODE_ENV=production');
    warnings.push('AUTH_SECRET is not set: using the public dev secret; anyone can mint tokens');
  }
  if (values.SEED_SECRET === undefined && production) throw new ConfigError('SEED_SECRET is required when NODE_ENV=production');
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
    packetTtlMs: values.PACKET_TTL_MS,
    limits: { ...DEFAULT_LIMITS, ttlMs: values.PACKET_TTL_MS },
    openRate: DEFAULT_OPEN_RATE,
    production,
    logLevel: values.LOG_LEVEL,
    warnings,
  };
}
