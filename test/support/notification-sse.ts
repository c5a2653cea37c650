// A Server-Sent Events client for GET /v1/me/events over a real connection (fetch, streamed):
// parses the stream as the SSE spec does (fields id/event/data, comments, a blank line ends an
// event), keeps every event and comment with its arrival time, and can be cut off at any moment
// (the way a phone loses its connection), after which nothing more is read.
import { createAdaptorServer } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { DEFAULT_BODY_BYTES_MAX, DEFAULT_TOKEN_TTL_MAX_SECONDS } from '../../src/config.js';
import { createApp } from '../../src/http/app.js';
import { TEST_SECRET, silentLogger, type Harness } from './harness.js';

export interface StreamedFrame {
  /** The fields as sent. */
  readonly id: string | undefined;
  readonly event: string | undefined;
  readonly data: string;
  /** The data parsed: {id, type, createdAt, data}. */
  readonly body: { id: string; type: string; createdAt: string; data: Record<string, any> };
  readonly atMs: number;
}

export interface EventStreamClient {
  readonly status: number;
  readonly headers: Headers;
  readonly frames: StreamedFrame[];
  readonly comments: { text: string; atMs: number }[];
  /** The raw text read so far. */
  readonly raw: () => string;
  /** Resolves with the frames once there are at least `count`. */
  waitFrames(count: number, timeoutMs?: number): Promise<StreamedFrame[]>;
  waitComments(count: number, timeoutMs?: number): Promise<void>;
  /** Cuts the connection; what was not read yet is never parsed. */
  close(): void;
  /** Whether the server ended the stream. */
  readonly ended: boolean;
}

export type Opening = { kind: 'stream'; stream: EventStreamClient } | { kind: 'refused'; status: number; body: any; headers: Headers };

/**
 * Opens GET /v1/me/events at `baseUrl` as `token`'s user, with Last-Event-ID if given (or, with
 * `viaQuery`, as ?lastEventId=). A non-200 answer is read whole and returned as refused.
 */
export async function openEventStream(baseUrl: string, token: string | undefined, options: { lastEventId?: string; viaQuery?: boolean } = {}): Promise<Opening> {
  const controller = new AbortController();
  const headers: Record<string, string> = { accept: 'text/event-stream' };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  let path = '/v1/me/events';
  if (options.lastEventId !== undefined) {
    if (options.viaQuery) path += `?lastEventId=${encodeURIComponent(options.lastEventId)}`;
    else headers['last-event-id'] = options.lastEventId;
  }
  const response = await fetch(`${baseUrl}${path}`, { headers, signal: controller.signal });
  if (response.status !== 200) {
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { kind: 'refused', status: response.status, body, headers: response.headers };
  }
  const frames: StreamedFrame[] = [];
  const comments: { text: string; atMs: number }[] = [];
  const waiters = new Set<() => void>();
  let raw = '';
  let buffer = '';
  let closed = false;
  let ended = false;
  let fields: { id?: string; event?: string; data: string[] } = { data: [] };
  const notify = () => {
    for (const waiter of waiters) waiter();
  };
  const line = (text: string) => {
    if (text === '') {
      if (fields.data.length > 0 || fields.id !== undefined || fields.event !== undefined) {
        const data = fields.data.join('\n');
        frames.push({ id: fields.id, event: fields.event, data, body: JSON.parse(data), atMs: Date.now() });
      }
      fields = { data: [] };
      return;
    }
    if (text.startsWith(':')) {
      comments.push({ text: text.slice(1).trim(), atMs: Date.now() });
      return;
    }
    const colon = text.indexOf(':');
    const name = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (name === 'id') fields.id = value;
    else if (name === 'event') fields.event = value;
    else if (name === 'data') fields.data.push(value);
  };
  void (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        if (closed) break;
        const text = decoder.decode(chunk, { stream: true });
        raw += text;
        buffer += text;
        let end: number;
        while ((end = buffer.search(/\r\n|\n|\r/)) !== -1) {
          const next = buffer.slice(0, end);
          buffer = buffer.slice(end + (buffer.startsWith('\r\n', end) ? 2 : 1));
          line(next);
          if (closed) return;
        }
        notify();
      }
      ended = !closed;
    } catch {
      // aborted, or the connection was cut
    } finally {
      notify();
    }
  })();
  const wait = async (done: () => boolean, what: string, timeoutMs: number) => {
    if (done()) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`${what}: not within ${timeoutMs} ms (frames: ${JSON.stringify(frames.map((frame) => frame.id))}, comments: ${comments.length})`));
      }, timeoutMs);
      const check = () => {
        if (!done()) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve();
      };
      waiters.add(check);
    });
  };
  const stream: EventStreamClient = {
    status: response.status,
    headers: response.headers,
    frames,
    comments,
    raw: () => raw,
    async waitFrames(count, timeoutMs = 15_000) {
      await wait(() => frames.length >= count, `${count} frames`, timeoutMs);
      return frames.slice();
    },
    async waitComments(count, timeoutMs = 15_000) {
      await wait(() => comments.length >= count, `${count} comments`, timeoutMs);
    },
    close() {
      closed = true;
      controller.abort();
    },
    get ended() {
      return ended;
    },
  };
  return { kind: 'stream', stream };
}

/** Opens a stream that must be accepted. */
export async function mustOpen(baseUrl: string, token: string, options: { lastEventId?: string; viaQuery?: boolean } = {}): Promise<EventStreamClient> {
  const opening = await openEventStream(baseUrl, token, options);
  if (opening.kind !== 'stream') throw new Error(`GET /v1/me/events answered ${opening.status}: ${JSON.stringify(opening.body)}`);
  // Connected: the server's first comment comes before any event.
  await opening.stream.waitComments(1);
  return opening.stream;
}

/** The harness's service behind a real listening server (streams need one), with short keep-alives. */
export async function serveHarness(h: Harness, options: { keepAliveMs: number }): Promise<{ url: string; close(): Promise<void> }> {
  // A second app on the same service: its transport metrics go to a registry of their own (the
  // harness's app registered its own in the service's); every use case is the harness's service.
  const service = Object.create(h.hongbao.service, { metrics: { value: new Registry() } }) as typeof h.hongbao.service;
  const app = createApp(service, {
    authSecret: TEST_SECRET,
    logger: silentLogger,
    bodyBytesMax: DEFAULT_BODY_BYTES_MAX,
    tokenTtlMaxSeconds: DEFAULT_TOKEN_TTL_MAX_SECONDS,
    eventStreamKeepAliveMs: options.keepAliveMs,
  });
  const server = createAdaptorServer({ fetch: app.fetch });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      }),
  };
}
