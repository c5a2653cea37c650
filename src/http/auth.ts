// Bearer JWT (HS256, AUTH_SECRET); `sub` is the user id; "role": "admin" may call admin routes.
import type { MiddlewareHandler } from 'hono';
import { createSecretKey, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { ApiError } from './errors.js';

export const USER_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export interface Caller {
  readonly userId: string;
  readonly admin: boolean;
}

export type AuthVariables = {
  caller: Caller;
  /** The node that passed this request on (a verified Hongbao-Forwarded header); unset when it came from a client. */
  forwardedFrom?: string;
};

/** Verified tokens remembered per process: an app sends the same token on every request. */
export const VERIFIED_TOKENS_MAX = 100_000;

/** The HS256 key as a KeyObject, made once: building it per call costs 50× the verification. */
function hs256Key(secret: string): KeyObject {
  return createSecretKey(Buffer.from(secret, 'utf8'));
}

export interface AuthOptions {
  /** Tokens must carry `exp`, at most this many seconds after their `iat` (or after now). */
  readonly tokenTtlMaxSeconds: number;
}

/** RFC 7235: the scheme is case-insensitive; one or more spaces before the token. */
const BEARER = /^bearer +([A-Za-z0-9_.-]+)$/i;

export function requireAuth(secret: string, options: AuthOptions): MiddlewareHandler<{ Variables: AuthVariables }> {
  const key = hs256Key(secret);
  // token → who it names and until when; a signature is checked once, the expiry every time.
  const verified = new Map<string, { caller: Caller; expiresAtMs: number }>();
  return async (c, next) => {
    const header = c.req.header('authorization') ?? '';
    const match = BEARER.exec(header);
    if (match === null) throw new ApiError(401, 'unauthorized', 'missing bearer token: send Authorization: Bearer <JWT>');
    const token = match[1]!;
    const known = verified.get(token);
    if (known !== undefined && Date.now() < known.expiresAtMs) {
      c.set('caller', known.caller);
      return next();
    }
    let payload: Record<string, unknown>;
    try {
      // Only HS256: a token that names another algorithm (or none) is refused.
      const verified = jwt.verify(token, key, { algorithms: ['HS256'] });
      if (typeof verified === 'string') throw new Error('a JWT payload must be an object');
      payload = verified;
    } catch (error) {
      throw new ApiError(401, 'unauthorized', 'invalid or expired token', { cause: error });
    }
    const subject = payload.sub;
    if (typeof subject !== 'string' || !USER_ID_PATTERN.test(subject)) {
      throw new ApiError(401, 'unauthorized', 'token subject must be a user id of 1–64 characters [A-Za-z0-9_-]');
    }
    // A token that never expires is a password that can never be changed: refuse it, and one
    // that claims to live longer than the deployment allows.
    if (typeof payload.exp !== 'number') throw new ApiError(401, 'unauthorized', 'token must carry exp (an expiry time)');
    const issuedAtSeconds = typeof payload.iat === 'number' ? payload.iat : Math.floor(Date.now() / 1000);
    if (payload.exp - issuedAtSeconds > options.tokenTtlMaxSeconds) {
      throw new ApiError(401, 'unauthorized', `token lives longer than the ${options.tokenTtlMaxSeconds} s this deployment allows`);
    }
    const caller: Caller = { userId: subject, admin: payload.role === 'admin' };
    // Remembered, never past its expiry.
    if (verified.size >= VERIFIED_TOKENS_MAX) verified.delete(verified.keys().next().value!);
    verified.set(token, { caller, expiresAtMs: payload.exp * 1000 });
    c.set('caller', caller);
    await next();
  };
}

export const requireAdmin: MiddlewareHandler<{ Variables: AuthVariables }> = async (c, next) => {
  if (!c.get('caller').admin) throw new ApiError(403, 'forbidden', 'this route needs an admin token');
  await next();
};

/** Mints a token (dev helper and tests). */
export function issueToken(secret: string, userId: string, options: { admin?: boolean; ttlSeconds?: number } = {}): Promise<string> {
  const nowSeconds = Math.floor(Date.now() / 1000);
  return Promise.resolve(
    jwt.sign(
      { sub: userId, iat: nowSeconds, exp: nowSeconds + (options.ttlSeconds ?? 7 * 24 * 3600), ...(options.admin ? { role: 'admin' } : {}) },
      hs256Key(secret),
      { algorithm: 'HS256', noTimestamp: true },
    ),
  );
}
