// One ioredis client with every option that matters written out. Redis is a cache here:
// commands fail fast instead of queueing while it is down, and the engine answers without it.
import { Redis } from 'ioredis';

/** A cache answer slower than this is no answer: the request goes on to the actor. */
export const REDIS_COMMAND_TIMEOUT_MS = 100;

export function createRedis(url: string, onError: (error: Error) => void): Redis {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 2_000,
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    // No offline queue and no per-command retries: while Redis is down, calls fail at once.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // Keep reconnecting in the background, at most once a second.
    retryStrategy: (attempt) => Math.min(attempt * 100, 1_000),
    enableReadyCheck: true,
    keyPrefix: 'hb:',
    // Commands issued in the same tick go out in one write: under a crowd every open's token
    // bucket call (and cache lookup) would otherwise be a write and a read of its own.
    enableAutoPipelining: true,
  });
  client.on('error', onError);
  return client;
}
