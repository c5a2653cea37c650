// Baseline `redis-lua`: the most copied open-source red-packet pattern. At send time the
// shares are pre-split into a Redis list; every open is one Lua script that checks the user,
// pops a share and records it, atomically because Redis runs one script at a time.
// What this does not do (and copies usually do): push the claim onto a queue for a database
// writer. Leaving that out only flatters this baseline.
import { Redis } from 'ioredis';
import { alive } from './pg-tables.js';
import { type Claim, type Design, type Open, type Outcome, type Workload, packetIds, sharesOf } from './workload.js';

const ALREADY = -1;
const SOLD_OUT = -2;

// KEYS[1]: hash user → amount (who claimed); KEYS[2]: list of the shares still to hand out.
const OPEN_LUA = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return ${ALREADY} end
local share = redis.call('LPOP', KEYS[2])
if not share then return ${SOLD_OUT} end
redis.call('HSET', KEYS[1], ARGV[1], share)
return tonumber(share)
`;

type OpenCommand = (claimedKey: string, sharesKey: string, userId: string) => Promise<number>;

export function redisLua(workload: Workload, url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'): Design {
  // One prefix per run, so concurrent or crashed runs never see each other's keys.
  const prefix = `hb-bench:redis-lua:${process.pid}-${Date.now().toString(36)}:`;
  const orphan = /^hb-bench:redis-lua:(\d+)-/;
  // The hash tag {packetId} keeps both keys of a packet in one slot, as a cluster would require.
  const claimedKey = (packetId: string) => `${prefix}{${packetId}}:claimed`;
  const sharesKey = (packetId: string) => `${prefix}{${packetId}}:shares`;
  const ids = packetIds(workload);

  // One connection, as one Node process normally has: ioredis writes each command as soon as
  // it is called, so `concurrency` opens are in flight on the socket at once. Nothing batches
  // them further: auto-pipelining is off and each open is its own EVALSHA.
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 5_000,
    // A stuck command fails the run instead of hanging it.
    commandTimeout: 10_000,
    enableAutoPipelining: false,
    enableOfflineQueue: false,
    // A benchmark must not silently retry: a lost reply would be a lost (or doubled) open.
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    noDelay: true,
    enableReadyCheck: true,
    connectionName: 'hongbao-bench-redis-lua',
  });
  redis.defineCommand('hongbaoOpen', { numberOfKeys: 2, lua: OPEN_LUA });
  const openCommand = (redis as unknown as { hongbaoOpen: OpenCommand }).hongbaoOpen.bind(redis);

  async function inChunks(each: (pipeline: ReturnType<Redis['pipeline']>, packetId: string) => void): Promise<unknown[]> {
    const replies: unknown[] = [];
    for (let first = 0; first < ids.length; first += 500) {
      const pipeline = redis.pipeline();
      for (const packetId of ids.slice(first, first + 500)) each(pipeline, packetId);
      for (const [error, reply] of (await pipeline.exec()) ?? []) {
        if (error) throw error;
        replies.push(reply);
      }
    }
    return replies;
  }

  /** Deletes the keys of earlier runs on this machine whose process is gone (killed mid-run). */
  async function sweepOrphans(): Promise<void> {
    for await (const keys of redis.scanStream({ match: 'hb-bench:redis-lua:*', count: 1_000 }) as AsyncIterable<string[]>) {
      const dead = keys.filter((key) => {
        const pid = Number(orphan.exec(key)?.[1]);
        return Number.isSafeInteger(pid) && pid !== process.pid && !alive(pid);
      });
      if (dead.length > 0) await redis.del(...dead);
    }
  }

  return {
    name: 'redis-lua',
    async setup() {
      await redis.connect();
      await sweepOrphans();
      // Load the script now so the first timed opens hit EVALSHA, not the NOSCRIPT → EVAL fallback.
      await redis.script('LOAD', OPEN_LUA);
      await inChunks((pipeline, packetId) => pipeline.rpush(sharesKey(packetId), ...sharesOf(workload, packetId)));
    },
    async open({ packetId, userId }: Open): Promise<Outcome> {
      const reply = await openCommand(claimedKey(packetId), sharesKey(packetId), userId);
      if (reply === ALREADY) return { kind: 'already' };
      if (reply === SOLD_OUT) return { kind: 'sold_out' };
      return { kind: 'claimed', amountFen: reply };
    },
    async storedClaims() {
      const hashes = (await inChunks((pipeline, packetId) => pipeline.hgetall(claimedKey(packetId)))) as Record<string, string>[];
      const claims: Claim[] = [];
      hashes.forEach((hash, index) => {
        for (const [userId, amount] of Object.entries(hash)) claims.push({ packetId: ids[index]!, userId, amountFen: Number(amount) });
      });
      return claims;
    },
    async extra() {
      const [, appendonly] = (await redis.config('GET', 'appendonly')) as string[];
      const [, save] = (await redis.config('GET', 'save')) as string[];
      const server = (await redis.info('server')).match(/redis_version:(\S+)/)?.[1];
      // The durability the numbers were measured with: Redis here keeps claims in memory only.
      return { redis: { version: server, appendonly, save: save || '(off)' } };
    },
    async cleanup() {
      if (redis.status === 'ready') {
        await inChunks((pipeline, packetId) => pipeline.del(claimedKey(packetId), sharesKey(packetId)));
        await redis.quit();
      } else {
        redis.disconnect();
      }
    },
  };
}
