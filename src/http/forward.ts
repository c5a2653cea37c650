// Forwarding between nodes: a request for a packet another node owns is passed to that node
// as it came (same method and path, the caller's Authorization), and the owner's answer is
// passed back as it is. The caller sees one answer; when the owner cannot give one in time
// the caller hears the API's usual 503 busy answer and retries — never a hang, never a 500.
import type { Context } from 'hono';
import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { Agent, request } from 'undici';
import type { HongbaoService } from '../app/service.js';
import type { AuthVariables } from './auth.js';
import { ApiError, retryLater } from './errors.js';
import { FORWARDED_HEADER, forwardKey, signForward, verifyForward } from './forward-signature.js';
import type { ForwardOutcome, HttpMetrics } from './metrics.js';

/** Forwards in flight at once from one app (a process serves one); past it the caller hears busy at once. */
export const FORWARDS_IN_FLIGHT_MAX = 4096;
/** The whole forward — connect, headers and body — must end within this. */
export const FORWARD_TIMEOUT_MS = 5_000;
/** Kept-alive connections to one owner node; more requests queue on them (and count in flight). */
export const FORWARD_CONNECTIONS_PER_ORIGIN = 128;
/** The largest answer passed back; a result page of 1000 claims is about 100 KiB. */
export const FORWARD_BODY_BYTES_MAX = 1024 * 1024;
/** What the caller is told to wait when the owner did not answer. */
export const FORWARD_RETRY_AFTER_MS = 1_000;

/** The owner's headers that are part of its answer; the rest are about its connection. */
const ANSWER_HEADERS = ['content-type', 'retry-after', 'hongbao-node'] as const;
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

let sharedAgent: Agent | undefined;

/** One keep-alive pool per process, made on the first forward: a single node never opens one. */
function agent(): Agent {
  sharedAgent ??= new Agent({
    connections: FORWARD_CONNECTIONS_PER_ORIGIN,
    pipelining: 1,
    // Below Node's server keepAliveTimeout (5 s), so we drop an idle socket before the owner does.
    keepAliveTimeout: 4_000,
    keepAliveMaxTimeout: 60_000,
    keepAliveTimeoutThreshold: 1_000,
    headersTimeout: FORWARD_TIMEOUT_MS,
    bodyTimeout: FORWARD_TIMEOUT_MS,
    connect: { timeout: FORWARD_TIMEOUT_MS },
  });
  return sharedAgent;
}

export interface ForwardingOptions {
  /** Tests shorten these; production uses the constants above. */
  readonly timeoutMs?: number;
  readonly inFlightMax?: number;
}

/** A request that carries a body (a payment return, a provider's notification): it travels as it came. */
export interface ForwardedBody {
  readonly body: string;
  readonly contentType: string;
  /** Headers of the request that go with it (a notification's signature headers). */
  readonly headers?: readonly string[];
}

class ForwardFailure extends Error {
  override readonly name = 'ForwardFailure';
}

export function createForwarding(
  service: HongbaoService,
  settings: { authSecret: string; logger: Logger; metrics: HttpMetrics } & ForwardingOptions,
) {
  const key: KeyObject = forwardKey(settings.authSecret);
  const timeoutMs = settings.timeoutMs ?? FORWARD_TIMEOUT_MS;
  const inFlightMax = settings.inFlightMax ?? FORWARDS_IN_FLIGHT_MAX;
  const { metrics, logger } = settings;
  let inFlight = 0;
  const count = (outcome: ForwardOutcome) => metrics.forwards.inc({ outcome });

  async function forward(c: Context<{ Variables: AuthVariables }>, owner: { nodeId: string; url: string }, payload?: ForwardedBody): Promise<Response> {
    if (inFlight >= inFlightMax) {
      count('overloaded');
      throw retryLater(`too many requests are being passed to other nodes (${inFlightMax})`, FORWARD_RETRY_AFTER_MS);
    }
    const forwarded = { method: c.req.method, path: c.req.path, authorization: c.req.header('authorization') ?? '' };
    const requestHeaders: Record<string, string> = { authorization: forwarded.authorization, [FORWARDED_HEADER]: signForward(key, service.nodeId, forwarded, Date.now()) };
    if (payload !== undefined) {
      requestHeaders['content-type'] = payload.contentType;
      for (const name of payload.headers ?? []) {
        const value = c.req.header(name);
        if (value !== undefined) requestHeaders[name] = value;
      }
    }
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    inFlight += 1;
    metrics.forwardsInFlight.inc();
    try {
      const answer = await request(`${owner.url.replace(/\/+$/, '')}${forwarded.path}`, {
        dispatcher: agent(),
        method: forwarded.method as 'GET' | 'POST',
        headers: requestHeaders,
        ...(payload !== undefined ? { body: payload.body } : {}),
        signal: abort.signal,
      });
      const chunks: Buffer[] = [];
      let length = 0;
      for await (const chunk of answer.body as AsyncIterable<Buffer>) {
        length += chunk.length;
        if (length > FORWARD_BODY_BYTES_MAX) {
          answer.body.destroy();
          throw new ForwardFailure(`answered more than ${FORWARD_BODY_BYTES_MAX} bytes`);
        }
        chunks.push(chunk);
      }
      const answerHeaders = new Headers();
      for (const name of ANSWER_HEADERS) {
        const value = answer.headers[name];
        if (typeof value === 'string') answerHeaders.set(name, value);
      }
      count('ok');
      return new Response(Buffer.concat(chunks, length), { status: answer.statusCode, headers: answerHeaders });
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      const timedOut = abort.signal.aborted || (typeof code === 'string' && TIMEOUT_CODES.has(code));
      count(timedOut ? 'timeout' : 'unreachable');
      // Debug only: under an outage every request fails alike, and the counter already says so.
      logger.debug({ err: error, owner }, 'forward failed');
      const why = timedOut ? `did not answer within ${timeoutMs} ms` : 'cannot be reached';
      throw new ApiError(503, 'unavailable', `the node that owns this packet (${owner.nodeId}) ${why}; retry shortly`, {
        retryAfterSeconds: Math.ceil(FORWARD_RETRY_AFTER_MS / 1000),
        cause: error,
      });
    } finally {
      clearTimeout(timer);
      inFlight -= 1;
      metrics.forwardsInFlight.dec();
    }
  }

  return {
    /**
     * The node that signed this request's Hongbao-Forwarded header, or undefined when it has
     * none. A header that does not verify is refused: it would let a caller skip admission.
     */
    forwardedBy(c: Context<{ Variables: AuthVariables }>): string | undefined {
      const header = c.req.header(FORWARDED_HEADER);
      if (header === undefined) return undefined;
      const request = { method: c.req.method, path: c.req.path, authorization: c.req.header('authorization') ?? '' };
      const verdict = verifyForward(key, header, request, Date.now());
      if (!verdict.ok) {
        throw new ApiError(401, 'unauthorized', `the Hongbao-Forwarded header ${verdict.reason}; only engine nodes may send it, and clients must not`);
      }
      return verdict.from;
    },

    /**
     * For a packet route, after the first node's checks: undefined when this node decides the
     * packet, else the owner's answer. A forwarded request is never forwarded again: ownership
     * moved while it travelled, and the caller's retry finds the new owner. Not async: the
     * packets this node owns pay no extra await.
     */
    passOn(
      c: Context<{ Variables: AuthVariables }>,
      packetId: string,
      /** The route's own answer while the packet's slot is being taken over here or elsewhere (nothing was decided). */
      onHandover?: (retryAfterMs: number) => Response,
      /** The request's body, for a route that takes one: the owner gets it as it came. */
      payload?: ForwardedBody,
    ): Promise<Response> | undefined {
      const route = service.route(packetId);
      if (route.kind === 'here') return undefined;
      if (route.kind === 'busy' && onHandover !== undefined) {
        count('busy');
        return Promise.resolve(onHandover(route.retryAfterMs));
      }
      if (c.get('forwardedFrom') !== undefined) {
        count('busy');
        throw retryLater('this node no longer owns this packet', FORWARD_RETRY_AFTER_MS);
      }
      if (route.kind === 'busy') {
        count('busy');
        throw retryLater('this packet is moving to another node', route.retryAfterMs);
      }
      return forward(c, route, payload);
    },
  };
}

export type Forwarding = ReturnType<typeof createForwarding>;
