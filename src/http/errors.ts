// The one error boundary: every failure becomes API.md's {"error": {code, message}} with its
// status. Bad input is a 4xx; only a bug (a broken invariant) may ever be a 500.
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { Logger } from 'pino';
import { UnavailableError } from '../domain/errors.js';
import { MoneyFormatError } from '../money/money.js';

export type ErrorCode =
  | 'invalid_request'
  | 'unauthorized'
  | 'insufficient_balance'
  | 'forbidden'
  | 'not_found'
  | 'idempotency_conflict'
  | 'payload_too_large'
  | 'rate_limited'
  | 'unavailable'
  | 'internal';

export interface ApiErrorOptions {
  /** Listed in the body (e.g. every problem of a request). */
  readonly details?: unknown;
  /** Sent as the Retry-After header. */
  readonly retryAfterSeconds?: number;
  readonly cause?: unknown;
}

export class ApiError extends Error {
  override readonly name = 'ApiError';
  readonly details: unknown;
  readonly retryAfterSeconds: number | undefined;

  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: ErrorCode,
    message: string,
    options: ApiErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.details = options.details;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/**
 * 503 unavailable with Retry-After: the one answer for "not now, retry" — the engine shed the
 * request, or the packet's owner node cannot answer it (handover, timeout, overload, down).
 */
export const retryLater = (message: string, retryAfterMs: number) =>
  new ApiError(503, 'unavailable', `${message}; retry shortly`, { retryAfterSeconds: Math.ceil(retryAfterMs / 1000) });

export const idempotencyConflict = () => new ApiError(409, 'idempotency_conflict', 'this Idempotency-Key was used with another body');

export function errorBody(code: ErrorCode, message: string, details?: unknown) {
  return { error: { code, message, ...(details === undefined ? {} : { details }) } };
}

const STATUS_CODES: Partial<Record<number, ErrorCode>> = {
  400: 'invalid_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  413: 'payload_too_large',
  429: 'rate_limited',
};

export function handleError(error: Error, c: Context, logger: Logger): Response {
  if (error instanceof ApiError) {
    if (error.retryAfterSeconds !== undefined) c.header('Retry-After', String(error.retryAfterSeconds));
    return c.json(errorBody(error.code, error.message, error.details), error.status);
  }
  if (error instanceof MoneyFormatError) return c.json(errorBody('invalid_request', error.message), 400);
  if (error instanceof UnavailableError) {
    logger.warn({ err: error }, 'dependency unavailable');
    c.header('Retry-After', '1');
    return c.json(errorBody('unavailable', `${error.message}; please retry shortly`), 503);
  }
  if (error instanceof HTTPException && error.status < 500) {
    const code = STATUS_CODES[error.status] ?? 'invalid_request';
    return c.json(errorBody(code, error.message || code), error.status as ContentfulStatusCode);
  }
  logger.error({ err: error }, 'unexpected error');
  return c.json(errorBody('internal', 'internal error; it has been logged'), 500);
}
