// A real HTTP receiver for webhook tests: records every delivery (headers, body, time), checks
// nothing itself, and answers what the test says (200 by default, or a status for a while).
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  readonly signature: string | undefined;
  readonly body: string;
  readonly event: { id: string; type: string; createdAt: string; data: Record<string, any> };
  readonly atMs: number;
  readonly answered: number;
}

export interface Receiver {
  readonly url: string;
  readonly received: Received[];
  /** Answers this status to every delivery until changed. */
  answer(status: number): void;
  /** Holds every answer this long (a slow receiver). */
  delay(ms: number): void;
  /** The most requests it was answering at once. */
  readonly maxInFlight: number;
  close(): Promise<void>;
}

export async function startReceiver(path = '/hooks'): Promise<Receiver> {
  const received: Received[] = [];
  let status = 200;
  let delayMs = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const read = (request: IncomingMessage) =>
    new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      request.on('error', reject);
    });
  const server: Server = createServer(async (request, response) => {
    inFlight += 1;
    maxInFlight = Math.max(maxInFlight, inFlight);
    const body = await read(request);
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    inFlight -= 1;
    const answered = status;
    received.push({ signature: request.headers['hongbao-signature'] as string | undefined, body, event: JSON.parse(body), atMs: Date.now(), answered });
    response.writeHead(answered, { 'content-type': 'text/plain' }).end(answered < 300 ? 'ok' : 'no');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`,
    received,
    answer: (next) => (status = next),
    delay: (ms) => (delayMs = ms),
    get maxInFlight() {
      return maxInFlight;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
