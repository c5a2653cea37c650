// Baseline `pg-lock`: the design of the PHP article this product started from. One transaction
// per open that locks the packet row (SELECT ... FOR UPDATE), so opens on one packet run one
// at a time and the seq-th open draws the seq-th double-mean share, exactly as the engine does.
// Written the way a careful engineer would: the "already claimed?" check rides on the locking
// SELECT, and the claim insert and packet update go in one statement, so the lock is held for
// two round trips (plus COMMIT) instead of four. Every statement is named, so prepared once
// per connection and then only bound and executed.
import { createPool, createTables, dropTables, loadClaims, schemaName, serverSettings, shareDecider, warm } from './pg-tables.js';
import { type Design, type Open, type Outcome, type Workload } from './workload.js';

interface LockedPacket {
  total_fen: number;
  share_count: number;
  remaining_count: number;
  remaining_fen: number;
  seq: number;
  claimed: boolean;
}

export function pgLock(workload: Workload): Design {
  const schema = schemaName('pg-lock');
  const pool = createPool(workload, 'hongbao-bench-pg-lock');
  // Seeds are derived once per packet, as any server would cache them; an HMAC per open is not the point.
  const decideShare = shareDecider(workload);

  const lockPacket = {
    name: 'lock-packet',
    text: `SELECT p.total_fen, p.share_count, p.remaining_count, p.remaining_fen, p.seq,
                  EXISTS (SELECT 1 FROM ${schema}.claims c WHERE c.packet_id = p.id AND c.user_id = $2) AS claimed
             FROM ${schema}.packets p WHERE p.id = $1 FOR UPDATE OF p`,
  };
  const recordClaim = {
    name: 'record-claim',
    text: `WITH claim AS (
             INSERT INTO ${schema}.claims (packet_id, user_id, amount_fen, seq) VALUES ($1, $2, $3, $4)
           )
           UPDATE ${schema}.packets
              SET remaining_count = remaining_count - 1, remaining_fen = remaining_fen - $3, seq = $4
            WHERE id = $1`,
  };

  return {
    name: 'pg-lock',
    async setup() {
      await createTables(pool, schema, workload);
      await warm(pool, Math.min(workload.concurrency, 32));
    },
    async open({ packetId, userId }: Open): Promise<Outcome> {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const { rows } = await client.query<LockedPacket>({ ...lockPacket, values: [packetId, userId] });
        const packet = rows[0];
        if (packet === undefined) throw new Error(`no packet ${packetId}`);
        if (packet.claimed || packet.remaining_count === 0) {
          await client.query('ROLLBACK');
          return packet.claimed ? { kind: 'already' } : { kind: 'sold_out' };
        }
        const { seq, amountFen } = decideShare(packetId, packet);
        await client.query({ ...recordClaim, values: [packetId, userId, amountFen, seq] });
        await client.query('COMMIT');
        return { kind: 'claimed', amountFen };
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw error;
      } finally {
        client.release();
      }
    },
    storedClaims: () => loadClaims(pool, schema),
    async extra() {
      return { pool: Math.min(workload.concurrency, 32), postgres: await serverSettings(pool) };
    },
    cleanup: () => dropTables(pool, schema),
  };
}
