// Payments in a cluster of three engine nodes and a ledger, each a real process on Kafka +
// Postgres + Redis, sharing one sandbox provider (run here, on a port of its own, as
// `npm run sandbox` would be). Each packet is sent through one node, its return forwarded
// through the next, opened through the third; the sandbox notifies the node that made the order,
// which is often not the packet's owner, so funding travels to the owner. Afterwards every
// claim is credited exactly once, each packet is live or finished, the provider's account holds
// exactly what was paid, and reconciliation on every node is clean.
import { serve, type ServerType } from '@hono/node-server';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { createSandbox, SANDBOX_DEV_MERCHANT_KEY, type Sandbox } from '../../src/payments/sandbox/index.js';
import { call, fenOf, startCluster, type TestCluster } from '../support/cluster.js';
import { silentLogger } from '../support/harness.js';

let cluster: TestCluster | undefined;
let sandbox: Sandbox | undefined;
let server: ServerType | undefined;

afterAll(async () => {
  await cluster?.stop();
  await sandbox?.close();
  await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('payments through the sandbox in a cluster', () => {
  it('funding goes to the owner of each packet, wherever the return and the notification arrive', async () => {
    sandbox = createSandbox({ dataDir: 'memory', merchantKey: SANDBOX_DEV_MERCHANT_KEY, retry: { firstDelayMs: 100, maxDelayMs: 1_000, attemptsMax: 40 }, delayedNotifyMs: 500, logger: silentLogger });
    server = await new Promise<ServerType>((resolve) => {
      const started = serve({ fetch: sandbox!.app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(started));
    });
    const sandboxUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    cluster = await startCluster({ engines: 3, ledgers: 1, partitions: 8, env: { SANDBOX_URL: sandboxUrl, SANDBOX_PUBLIC_KEY: sandbox.publicKeyBase64 } });
    const urls = cluster.engineUrls();
    const run = cluster.runId;
    const modes = ['normal', 'delayed', 'duplicate'] as const;
    const packets: { id: string; sender: string; totalFen: bigint; openers: Map<string, bigint> }[] = [];

    for (let index = 0; index < 6; index += 1) {
      const sender = `${run}-payer-${index}`;
      const via = (step: number) => urls[(index + step) % urls.length]!;
      const sent = await call(via(0), 'POST', '/v1/packets', sender, {
        body: { type: 'group_lucky', targetId: `${run}-g`, count: 4, amount: '4.00', payWith: 'sandbox' },
        headers: { 'idempotency-key': `${run}-send-${index}` },
        timeoutMs: 10_000,
      });
      expect(sent.status, JSON.stringify(sent.body)).toBe(201);
      const { packet, payment } = sent.body;
      const sheet = await fetch(`${sandboxUrl}/v1/pay`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ orderId: payment.orderId, payToken: payment.payToken, outcome: 'success', notify: modes[index % modes.length] }),
      });
      const { returnPayload } = (await sheet.json()) as { returnPayload: string };
      const returned = await call(via(1), 'POST', `/v1/packets/${packet.id}/payment/return`, sender, { body: { returnPayload }, timeoutMs: 10_000 });
      expect(returned.status, JSON.stringify(returned.body)).toBe(200);
      expect(['awaiting_funds', 'live']).toContain(returned.body.packet.status);
      const openers = new Map<string, bigint>();
      for (let opener = 0; opener < 3; opener += 1) {
        const user = `${run}-opener-${index}-${opener}`;
        for (let attempt = 0; ; attempt += 1) {
          const opened = await call(via(2 + opener), 'POST', `/v1/packets/${packet.id}/open`, user, { timeoutMs: 10_000 });
          if (opened.status === 200 && opened.body.state === 'claimed') {
            openers.set(user, fenOf(opened.body.amount));
            break;
          }
          expect(attempt, JSON.stringify(opened.body)).toBeLessThan(50);
          await sleep(100);
        }
      }
      packets.push({ id: packet.id, sender, totalFen: 400n, openers });
    }

    // Every notification arrives (some at a node that does not own the packet) and is decided by the owner.
    for (const packet of packets) {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const page = await call(urls[0]!, 'GET', `/v1/packets/${packet.id}`, packet.sender, { timeoutMs: 10_000 });
        if (page.status === 200 && page.body.packet.status === 'live') {
          expect(page.body.claims.every((claim: { credited: boolean }) => claim.credited)).toBe(true);
          break;
        }
        expect(Date.now(), `packet ${packet.id} is ${JSON.stringify(page.body.packet?.status)}`).toBeLessThan(deadline);
        await sleep(200);
      }
    }
    expect(sandbox.pendingDeliveries()).toBe(0);

    // Credited exactly once: each opener's balance is their claim, with nothing pending, through any node.
    for (const packet of packets) {
      for (const [user, amountFen] of packet.openers) {
        const deadline = Date.now() + 30_000;
        for (;;) {
          const wallet = await call(urls[packets.indexOf(packet) % urls.length]!, 'GET', '/v1/wallet', user, { timeoutMs: 10_000 });
          if (wallet.body.pending === '0.00') {
            expect(fenOf(wallet.body.balance)).toBe(amountFen);
            break;
          }
          expect(Date.now()).toBeLessThan(deadline);
          await sleep(200);
        }
      }
    }
    const reports = await Promise.all(urls.map((url) => call(url, 'POST', '/v1/admin/reconcile', 'admin', { timeoutMs: 30_000 })));
    for (const report of reports) {
      expect(report.status).toBe(200);
      expect(report.body.discrepancies).toEqual([]);
    }
    // The provider paid in exactly the six totals (the reconcile checks its account against the paid orders too).
    const metrics = await Promise.all(urls.map(async (url) => (await fetch(`${url}/metrics`)).text()));
    const forwarded = metrics.reduce((sum, text) => sum + [...text.matchAll(/^hongbao_forwards_total\{outcome="ok"\} (\d+)/gm)].reduce((inner, match) => inner + Number(match[1]), 0), 0);
    expect(forwarded).toBeGreaterThan(0);
  });
});
