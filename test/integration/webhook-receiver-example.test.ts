// Proves the webhook receiver example of docs/api.md works as written: its code, read from the
// page, runs as a node process of its own; a webhook registered to it gets a real scenario's
// deliveries, verifies each and handles each once, in order per packet. A repeated delivery is
// answered 2xx and not handled again; a signature by another secret, over another body, missing,
// or older than five minutes is refused with 400. The same deliveries, caught beside it by a
// second webhook, match the documented schema of their type and carry a valid signature.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { notificationEventSchema } from '../../src/http/schemas.js';
import { signWebhook, verifyWebhook } from '../../src/notify/signature.js';
import { startHarness, type Harness } from '../support/harness.js';
import { apiClient } from '../support/http-client.js';
import { startReceiver, type Receiver } from '../support/webhook-receiver.js';

const DOCS = join(import.meta.dirname, '..', '..', 'docs', 'api.md');

/** The receiver example: the first js block after its heading in docs/api.md. */
function exampleCode(): string {
  const text = readFileSync(DOCS, 'utf8');
  const start = text.indexOf('#### A webhook receiver (this build)');
  expect(start, 'docs/api.md has the receiver example').toBeGreaterThanOrEqual(0);
  const code = /```js\n([\s\S]*?)```/.exec(text.slice(start))?.[1];
  expect(code).toBeDefined();
  return code!;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function until<T>(what: string, read: () => T, ok: (value: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = read();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (last: ${JSON.stringify(value)})`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

let h: Harness;
let caught: Receiver;
let example: ChildProcess | undefined;
let exampleUrl: string;
let exampleSecret: string;
let caughtSecret: string;
const printed: string[] = [];
const api = apiClient(() => h, 'rx');

beforeAll(async () => {
  h = await startHarness({ runJobs: true, webhookRetryDelayMs: () => 100 });
  caught = await startReceiver();
  const port = await freePort();
  exampleUrl = `http://127.0.0.1:${port}/hongbao`;
  const registered = await h.call('POST', '/v1/admin/webhooks', { user: 'ops', admin: true, body: { url: exampleUrl } });
  expect(registered.status, JSON.stringify(registered.body)).toBe(201);
  exampleSecret = registered.body.secret;
  const beside = await h.call('POST', '/v1/admin/webhooks', { user: 'ops', admin: true, body: { url: caught.url } });
  expect(beside.status).toBe(201);
  caughtSecret = beside.body.secret;
  example = spawn(process.execPath, ['--input-type=module', '-e', exampleCode()], {
    env: { ...process.env, HONGBAO_WEBHOOK_SECRET: exampleSecret, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let partial = '';
  example.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop()!;
    printed.push(...lines);
  });
  let errors = '';
  example.stderr!.setEncoding('utf8').on('data', (chunk: string) => (errors += chunk));
  // Listening once it answers (400: no signature).
  const deadline = Date.now() + 10_000;
  for (;;) {
    const answer = await fetch(exampleUrl, { method: 'POST', body: '{}' }).catch(() => undefined);
    if (answer !== undefined) {
      expect(answer.status).toBe(400);
      break;
    }
    if (Date.now() > deadline || example.exitCode !== null) throw new Error(`the example did not start: ${errors}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
});
afterAll(async () => {
  example?.kill();
  await h?.stop();
  await caught?.close();
});

const post = (body: string, signature: string | undefined) =>
  fetch(exampleUrl, { method: 'POST', headers: { 'content-type': 'application/json', ...(signature === undefined ? {} : { 'hongbao-signature': signature }) }, body });

describe('the receiver example of docs/api.md', () => {
  it('verifies and handles every delivery of a scenario once, in order; the same deliveries match their documented schemas', async () => {
    await api.fund('rx-alice', '10.00');
    const packet = await api.sendOk('rx-alice', { type: 'group_lucky', targetId: 'rx-g', count: 2, amount: '2.00' });
    const bob = await api.openOk(packet.id, 'rx-bob');
    const carol = await api.openOk(packet.id, 'rx-carol');
    const handled = await until(
      'the example handled six events',
      () => printed.filter((line) => line.includes(packet.id)),
      (lines) => lines.length >= 6,
    );
    const events = handled.map((line) => ({ type: line.slice(0, line.indexOf(' ')), data: JSON.parse(line.slice(line.indexOf(' ') + 1)) }));
    expect(events.map((event) => event.type)).toEqual(['packet.sent', 'packet.opened', 'wallet.credited', 'packet.opened', 'wallet.credited', 'packet.finished']);
    expect(events[1]!.data).toMatchObject({ userId: 'rx-bob', amount: bob.amount, seq: 1 });
    expect(events[3]!.data).toMatchObject({ userId: 'rx-carol', amount: carol.amount, seq: 2 });
    const mine = await until('six caught beside it', () => caught.received.filter((entry) => entry.event.data.packetId === packet.id), (list) => list.length >= 6);
    for (const [index, entry] of mine.entries()) {
      expect(verifyWebhook(caughtSecret, entry.body, entry.signature!, Date.now())).toBe(true);
      const parsed = notificationEventSchema.parse(entry.event);
      expect(parsed, `undocumented fields in ${entry.body}`).toEqual(entry.event);
      expect(entry.event.data).toEqual(events[index]!.data);
    }
  });

  it('answers a repeat 2xx without handling it again, and refuses what does not verify with 400', async () => {
    const delivered = caught.received.at(-1)!;
    const before = printed.length;
    expect((await post(delivered.body, signWebhook(exampleSecret, delivered.body, Date.now()))).status).toBe(204);
    expect((await post(delivered.body, signWebhook('whsec_another', delivered.body, Date.now()))).status).toBe(400);
    expect((await post(delivered.body.replace('"packetId"', '"packetId" '), signWebhook(exampleSecret, delivered.body, Date.now()))).status).toBe(400);
    expect((await post(delivered.body, signWebhook(exampleSecret, delivered.body, Date.now() - 6 * 60_000))).status).toBe(400);
    expect((await post(delivered.body, undefined)).status).toBe(400);
    expect((await post(delivered.body, 't=1,v1=zz')).status).toBe(400);
    // A new event signed four minutes ago is within the tolerance: handled.
    const fresh = JSON.stringify({ ...delivered.event, id: `${delivered.event.id}_again` });
    expect((await post(fresh, signWebhook(exampleSecret, fresh, Date.now() - 4 * 60_000))).status).toBe(204);
    await until('the new one handled', () => printed.length, (count) => count === before + 1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(printed.length).toBe(before + 1);
  });
});
