// The one error boundary: every failure becomes API.md's {"error": {code, message}} with its
// status. Bad input is a 4xx; only a bug (a broken invariant) may ever be a 500.
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { Logger } from 'pino';
import { UnavailableError } from '../domain/errors.js';
import { isConnectionError } from '../ledger/database.js';
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

export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

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
  if (error instanceof ApiError) return c.json(errorBody(error.code, error.message, error.details), error.status);
  if (error instanceof MoneyFormatError) return c.json(errorBody('invalid_request', error.message), 400);
  if (error instanceof UnavailableError || isConnectionError(error)) {
    logger.warn({ err: error }, 'dependency unavailable');
    c.header('Retry-After', '1');
    const message = error instanceof UnavailableError ? error.message : 'the database is unreachable';
    return c.json(errorBody('unavailable', `${message}; please retry shortly`), 503);
  }
  if (error instanceof HTTPException && error.status < 500) {
    const code = STATUS_CODES[error.status] ?? 'invalid_request';
    return c.json(errorBody(code, error.message || code), error.status as ContentfulStatusCode);
  }
  logger.error({ err: error }, 'unexpected error');
  return c.json(errorBody('internal', 'internal error; it has been logged'), 500);
}
