// The request body limit (413 payload_too_large). A client that sends too much must *see* the
// 413: if the server answered while the upload was still coming and then closed the socket with
// unread data in it, the kernel would send a reset and the client would report a broken
// connection instead (Node's fetch did, on about every other 2 MB body). So the rest of an
// oversized upload is read and dropped, up to a bound, before the answer, which closes the
// connection cleanly (`Connection: close`).
import type { MiddlewareHandler } from 'hono';
import { errorBody } from './errors.js';

/** Past this much, an oversized upload is no longer read to its end: the connection is cut. */
export const DISCARD_BYTES_MAX = 8 * 1024 * 1024;
/** Nor for longer than this: a slow sender cannot hold the connection open with a huge body. */
export const DISCARD_TIME_MAX_MS = 5_000;

export function limitBody(maxBytes: number): MiddlewareHandler {
  return async (c, next) => {
    const body = c.req.raw.body;
    if (body === null) return next();
    const reader = body.getReader();
    let size = 0;
    const declared = Number(c.req.header('content-length'));
    if (!(declared > maxBytes)) {
      const chunks: Uint8Array[] = [];
      for (;;) {
        const { done, value } = await reader.read();
        if (done) {
          c.req.raw = new Request(c.req.raw, { body: Buffer.concat(chunks, size) });
          return next();
        }
        size += value.length;
        if (size > maxBytes) break;
        chunks.push(value);
      }
    }
    await discard(reader, size);
    c.header('Connection', 'close');
    return c.json(errorBody('payload_too_large', `request body is larger than ${maxBytes} bytes`), 413);
  };
}

/** Reads and drops the rest of a body, up to DISCARD_BYTES_MAX and DISCARD_TIME_MAX_MS. */
async function discard(reader: ReadableStreamDefaultReader<Uint8Array>, alreadyRead: number): Promise<void> {
  const deadline = Date.now() + DISCARD_TIME_MAX_MS;
  let discarded = alreadyRead;
  let timer: NodeJS.Timeout | undefined;
  const timeUp = new Promise<'time_up'>((resolve) => {
    timer = setTimeout(() => resolve('time_up'), DISCARD_TIME_MAX_MS);
  });
  try {
    while (discarded <= DISCARD_BYTES_MAX && Date.now() < deadline) {
      const read = await Promise.race([reader.read(), timeUp]);
      if (read === 'time_up' || read.done) break;
      discarded += read.value.length;
    }
  } finally {
    clearTimeout(timer);
    // Whatever is left is not read: the connection closes after the answer. A failed cancel
    // means the stream is already gone, which is what cancelling wants.
    void reader.cancel().catch(() => undefined);
  }
}

/** JSON routes: a body sent as anything but application/json gets one clear message, not a list of missing fields. */
export const requireJson: MiddlewareHandler = async (c, next) => {
  const type = c.req.header('content-type') ?? '';
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    const got = type === '' ? 'no Content-Type' : `Content-Type ${JSON.stringify(type.slice(0, 100))}`;
    return c.json(errorBody('invalid_request', `the body must be JSON sent with Content-Type: application/json (got ${got})`), 400);
  }
  return next();
};
