// Idempotency-Key (as Stripe): the same key with the same body returns the first response;
// with another body it is a conflict. Only successes are stored: a rejected request changed
// nothing, so running it again is safe and lets a user retry after topping up.
import { createHash } from 'node:crypto';
import { and, eq } from 'drizzle-orm';
import type { Db, Tx } from './database.js';
import { idempotencyKeys } from './schema.js';

export interface StoredResponse {
  readonly statusCode: number;
  readonly body: unknown;
}

export type IdempotentResult = { kind: 'fresh' | 'replayed'; response: StoredResponse } | { kind: 'conflict' };

export interface IdempotencyScope {
  readonly userId: string;
  readonly route: string;
  readonly key: string;
  /** The canonical request body; its hash decides "same request". */
  readonly request: unknown;
}

export function hashRequest(request: unknown): string {
  return createHash('sha256').update(JSON.stringify(request)).digest('hex');
}

/**
 * Runs `work` in a transaction at most once per key. `work` returns the response; a 2xx is
 * stored in the same transaction as the work's effects, so effects and record land together.
 */
export async function runIdempotent(
  db: Db,
  scope: IdempotencyScope,
  work: (tx: Tx) => Promise<StoredResponse>,
): Promise<IdempotentResult> {
  const requestHash = hashRequest(scope.request);
  const stored = await findStored(db, scope);
  if (stored !== undefined) return replay(stored, requestHash);
  try {
    const response = await db.transaction(async (tx) => {
      const result = await work(tx);
      if (result.statusCode >= 200 && result.statusCode < 300) {
        await tx.insert(idempotencyKeys).values({
          userId: scope.userId,
          route: scope.route,
          key: scope.key,
          requestHash,
          statusCode: result.statusCode,
          response: result.body as object,
        });
      } else {
        // Nothing of a rejected request may stay behind: throwing rolls the transaction back.
        throw new RejectedResponse(result);
      }
      return result;
    });
    return { kind: 'fresh', response };
  } catch (error) {
    if (error instanceof RejectedResponse) {
      // A concurrent request with the same key may have committed while this one waited (on
      // the wallet's row lock, say) and so saw its effects: answer as the winner did, not 402.
      const winner = await findStored(db, scope);
      if (winner !== undefined) return replay(winner, requestHash);
      return { kind: 'fresh', response: error.response };
    }
    if (!isUniqueViolation(error)) throw error;
    // A concurrent request with the same key won the race: answer as it did.
    const winner = await findStored(db, scope);
    if (winner === undefined) throw error;
    return replay(winner, requestHash);
  }
}

/** Carries a rejected (non-2xx) response out of the transaction it aborted. */
class RejectedResponse extends Error {
  constructor(readonly response: StoredResponse) {
    super('rejected');
  }
}

async function findStored(db: Db, scope: IdempotencyScope) {
  const rows = await db
    .select()
    .from(idempotencyKeys)
    .where(and(eq(idempotencyKeys.userId, scope.userId), eq(idempotencyKeys.route, scope.route), eq(idempotencyKeys.key, scope.key)));
  return rows[0];
}

function replay(stored: { requestHash: string; statusCode: number; response: unknown }, requestHash: string): IdempotentResult {
  if (stored.requestHash !== requestHash) return { kind: 'conflict' };
  return { kind: 'replayed', response: { statusCode: stored.statusCode, body: stored.response } };
}

export function isUniqueViolation(error: unknown): boolean {
  for (let current: unknown = error; current instanceof Error || (typeof current === 'object' && current !== null); ) {
    if ((current as { code?: unknown }).code === '23505') return true;
    current = (current as { cause?: unknown }).cause;
    if (current === undefined) break;
  }
  return false;
}
