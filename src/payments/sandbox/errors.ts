// The sandbox's error answers, in the API's shape {"error": {code, message}}. Its own small copy
// of http/errors.ts: payments/ sits below http/ and may not import it. Bad input is a 4xx; only a
// bug may be a 500.
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { Logger } from 'pino';

export type SandboxErrorCode =
  | 'invalid_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'idempotency_conflict'
  | 'order_not_payable'
  | 'payload_too_large'
  | 'unavailable'
  | 'internal';

export class SandboxError extends Error {
  override readonly name = 'SandboxError';

  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: SandboxErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const errorBody = (code: SandboxErrorCode, message: string) => ({ error: { code, message } });

export function handleSandboxError(error: Error, c: Context, logger: Logger): Response {
  if (error instanceof SandboxError) {
    if (error.status >= 500) logger.warn({ err: error }, 'sandbox unavailable');
    return c.json(errorBody(error.code, error.message), error.status);
  }
  if (error instanceof HTTPException && error.status < 500) {
    const code: SandboxErrorCode = error.status === 401 ? 'unauthorized' : error.status === 404 ? 'not_found' : error.status === 413 ? 'payload_too_large' : 'invalid_request';
    return c.json(errorBody(code, error.message || code), error.status as ContentfulStatusCode);
  }
  logger.error({ err: error }, 'sandbox: unexpected error');
  return c.json(errorBody('internal', 'internal error; it has been logged'), 500);
}
