// Idempotency-Key (as Stripe): the same key with the same body returns the first response;
// with another body it is a conflict. Only successes are stored, as domain values (never HTTP):
// a rejected request changed
// nothing, so running it again is safe and lets a user retry after topping up.
import { createHash } from 'node:crypto';
import { and, eq } from 'drizzle-orm';
import type { Db, Tx } from './database.js';
import { idempotencyKeys } from './schema.js';

/** What a use case decided: a success (stored under the key) or a rejection (not stored). */
export type Decision<Value, Rejection> = { ok: true; value: Value } | { ok: false; rejection: Rejection };

export type IdempotentResult<Value, Rejection> =
  | { kind: 'fresh' | 'replayed'; value: Value }
  | { kind: 'rejected'; rejection: Rejection }
  | { kind: 'conflict' };

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
 * Runs `work` in a transaction at most once per key. A success is stored (as the domain value
 * `work` returned) in the same transaction as the work's effects, so effects and record land
 * together; a rejection rolls everything back.
 */
export async function runIdempotent<Value, Rejection>(
  db: Db,
  scope: IdempotencyScope,
  work: (tx: Tx) => Promise<Decision<Value, Rejection>>,
): Promise<IdempotentResult<Value, Rejection>> {
  const requestHash = hashRequest(scope.request);
  const stored = await findStored(db, scope);
  if (stored !== undefined) return replay<Value>(stored, requestHash);
  try {
    const value = await db.transaction(async (tx) => {
      const decision = await work(tx);
      // Nothing of a rejected request may stay behind: throwing rolls the transaction back.
      if (!decision.ok) throw new Rejected(decision.rejection);
      await tx.insert(idempotencyKeys).values({
        userId: scope.userId,
        route: scope.route,
        key: scope.key,
        requestHash,
        response: decision.value as object,
      });
      return decision.value;
    });
    return { kind: 'fresh', value };
  } catch (error) {
    if (error instanceof Rejected) {
      // A concurrent request with the same key may have committed while this one waited (on
      // the wallet's row lock, say) and so saw its effects: answer as the winner did.
      const winner = await findStored(db, scope);
      if (winner !== undefined) return replay<Value>(winner, requestHash);
      return { kind: 'rejected', rejection: error.rejection as Rejection };
    }
    if (!isUniqueViolation(error)) throw error;
    // A concurrent request with the same key won the race: answer as it did.
    const winner = await findStored(db, scope);
    if (winner === undefined) throw error;
    return replay<Value>(winner, requestHash);
  }
}

/** What is stored under the key already (a replay, or a conflict with another body), or null. */
export async function findIdempotent<Value>(db: Db, scope: IdempotencyScope): Promise<IdempotentResult<Value, never> | null> {
  const stored = await findStored(db, scope);
  return stored === undefined ? null : replay<Value>(stored, hashRequest(scope.request));
}

/** Carries a rejection out of the transaction it aborted. */
class Rejected extends Error {
  constructor(readonly rejection: unknown) {
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

function replay<Value>(stored: { requestHash: string; response: unknown }, requestHash: string): IdempotentResult<Value, never> {
  if (stored.requestHash !== requestHash) return { kind: 'conflict' };
  return { kind: 'replayed', value: stored.response as Value };
}
export function isUniqueViolation(error: unknown): boolean {
  for (let current: unknown = error; current instanceof Error || (typeof current === 'object' && current !== null); ) {
    if ((current as { code?: unknown }).code === '23505') return true;
    current = (current as { cause?: unknown }).cause;
    if (current === undefined) break;
  }
  return false;
}
