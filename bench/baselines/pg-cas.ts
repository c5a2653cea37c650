// Baseline `pg-cas`: optimistic concurrency as WeChat described it in 2015. Read the packet row
// without a lock, compute the share, then write only if nobody else wrote in between: a
// version-checked UPDATE and the claim insert in one statement (so one transaction, one round
// trip). When another open won the race the UPDATE matches no row and the open starts over,
// at most `maxRetries` times, after a tiny jittered pause so the losers do not collide again.
import { createPool, createTables, dropTables, loadClaims, schemaName, serverSettings, shareDecider, warm } from './pg-tables.js';
import { type Design, type Open, type Outcome, type Workload } from './workload.js';

interface PacketRow {
  total_fen: number;
  share_count: number;
  remaining_count: number;
  remaining_fen: number;
  seq: number;
  version: number;
  claimed: boolean;
}

const UNIQUE_VIOLATION = '23505';

/** 0 ms the first time (just yield), then up to `attempt` ms, capped at 4: tiny, and jittered. */
function backoff(attempt: number): Promise<void> {
  const ms = Math.floor(Math.random() * (Math.min(attempt, 4) + 1));
  return new Promise((resolve) => (ms === 0 ? setImmediate(resolve) : setTimeout(resolve, ms)));
}

export function pgCas(workload: Workload, maxRetries = 50): Design {
  const schema = schemaName('pg-cas');
  const pool = createPool(workload, 'hongbao-bench-pg-cas');
  const decideShare = shareDecider(workload);
  let retries = 0;
  let gaveUp = 0;
  let maxRetriesOfOneOpen = 0;

  const readPacket = {
    name: 'read-packet',
    text: `SELECT p.total_fen, p.share_count, p.remaining_count, p.remaining_fen, p.seq, p.version,
                  EXISTS (SELECT 1 FROM ${schema}.claims c WHERE c.packet_id = p.id AND c.user_id = $2) AS claimed
             FROM ${schema}.packets p WHERE p.id = $1`,
  };
  // Under READ COMMITTED a racing writer makes this UPDATE wait for its commit, then re-check
  // `version = $5` against the new row and match nothing: exactly the compare-and-set we want.
  const casClaim = {
    name: 'cas-claim',
    text: `WITH won AS (
             UPDATE ${schema}.packets
                SET remaining_count = remaining_count - 1, remaining_fen = remaining_fen - $3,
                    seq = $4, version = version + 1
              WHERE id = $1 AND version = $5
             RETURNING id
           )
           INSERT INTO ${schema}.claims (packet_id, user_id, amount_fen, seq) SELECT $1, $2, $3, $4 FROM won`,
  };

  return {
    name: 'pg-cas',
    async setup() {
      await createTables(pool, schema, workload);
      await warm(pool, Math.min(workload.concurrency, 32));
    },
    async open({ packetId, userId }: Open): Promise<Outcome> {
      for (let attempt = 0; ; attempt += 1) {
        const { rows } = await pool.query<PacketRow>({ ...readPacket, values: [packetId, userId] });
        const packet = rows[0];
        if (packet === undefined) throw new Error(`no packet ${packetId}`);
        if (packet.claimed) return { kind: 'already' };
        if (packet.remaining_count === 0) return { kind: 'sold_out' };
        const { seq, amountFen } = decideShare(packetId, packet);
        try {
          const { rowCount } = await pool.query({ ...casClaim, values: [packetId, userId, amountFen, seq, packet.version] });
          if (rowCount === 1) {
            maxRetriesOfOneOpen = Math.max(maxRetriesOfOneOpen, attempt);
            return { kind: 'claimed', amountFen };
          }
        } catch (error) {
          // The same user won on another connection between our read and write: the statement
          // rolled back whole, packet update included.
          if ((error as { code?: string }).code === UNIQUE_VIOLATION) return { kind: 'already' };
          throw error;
        }
        if (attempt >= maxRetries) {
          gaveUp += 1;
          return { kind: 'busy' };
        }
        retries += 1;
        await backoff(attempt);
      }
    },
    storedClaims: () => loadClaims(pool, schema),
    async extra() {
      return { retries, gaveUp, maxRetries, maxRetriesOfOneOpen, pool: Math.min(workload.concurrency, 32), postgres: await serverSettings(pool) };
    },
    cleanup: () => dropTables(pool, schema),
  };
}
