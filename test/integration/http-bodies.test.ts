// Proves the body rules over a real socket: a client that sends too much receives the 413
// (never a reset connection), on a connection that is then closed cleanly; and a JSON body
// sent without its content type gets one clear message instead of a field list.
import { serve, type ServerType } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../support/harness.js';
import { expectError } from '../support/http-client.js';

let h: Harness;
let server: ServerType;
let url: string;

beforeAll(async () => {
  h = await startHarness();
  server = await new Promise<ServerType>((resolve) => {
    const started = serve({ fetch: h.app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(started));
  });
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await h.stop();
});

describe('request bodies over a real connection', () => {
  it('every oversized upload (2 MB, 10 times) is answered 413 with Connection: close, never a reset', async () => {
    const token = await h.token('body-u');
    const greeting = 'x'.repeat(2 * 1024 * 1024);
    const outcomes: string[] = [];
    for (let attempt = 0; attempt < 10; attempt += 1) {
      try {
        const response = await fetch(`${url}/v1/packets`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': `big-${attempt}` },
          body: JSON.stringify({ type: 'group_lucky', targetId: 'g', count: 2, amount: '1.00', greeting }),
        });
        const body = (await response.json()) as { error: { code: string } };
        outcomes.push(`${response.status} ${body.error.code} ${response.headers.get('connection')}`);
      } catch (error) {
        outcomes.push(`failed: ${String((error as Error).cause ?? error)}`);
      }
    }
    expect(outcomes).toEqual(Array.from({ length: 10 }, () => '413 payload_too_large close'));
  });

  it('a body without Content-Type (or another type) gets 400 naming the content type, and changes nothing', async () => {
    const token = await h.token('body-u');
    const before = await h.money();
    for (const type of [undefined, 'text/plain', 'application/x-www-form-urlencoded']) {
      const response = await fetch(`${url}/v1/packets`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'idempotency-key': `type-${type}`, ...(type === undefined ? {} : { 'content-type': type }) },
        body: JSON.stringify({ type: 'group_lucky', targetId: 'g', count: 2, amount: '1.00' }),
      });
      const reply = { status: response.status, body: await response.json() };
      expectError(reply, 400, 'invalid_request');
      expect(reply.body.error.message).toMatch(/Content-Type: application\/json/);
    }
    // With a charset it is still JSON.
    const typed = await h.call('POST', '/v1/wallet/deposits', {
      user: 'body-admin',
      admin: true,
      body: { userId: 'body-u', amount: '1.00' },
      headers: { 'content-type': 'application/json; charset=utf-8', 'idempotency-key': 'typed-1' },
    });
    expect(typed.status).toBe(201);
    expect((await h.money()).deposited).toBe(before.deposited + 100);
  });
});
