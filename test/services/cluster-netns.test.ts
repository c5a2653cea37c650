// Nodes on separate hosts, not just separate processes: each node runs in a network namespace of
// its own (a veth pair on a bridge the test makes and removes), listens on its namespace address
// and reaches the services only through relays (test/support/netns.ts). The first test proves
// the plumbing: a node in a namespace serves a whole send/open/book round from its own address,
// and is not reachable on 127.0.0.1, so nothing here depends on sharing the loopback.
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, prepareClusterServices, startNode, type ClusterServices, type NodeHandle } from '../support/cluster.js';
import { createNetnsLab, type NetnsLab } from '../support/netns.js';
import { freePort } from '../support/process.js';

let lab: NetnsLab | undefined;
const services: ClusterServices[] = [];
const nodes: NodeHandle[] = [];

beforeAll(async () => {
  lab = await createNetnsLab();
});

afterAll(async () => {
  await Promise.all(nodes.map((node) => node.kill('SIGKILL')));
  await lab?.destroy();
  for (const each of services) await each.drop();
});

/** How a TCP connection to host:port ends: 'connected', or the error code (ECONNREFUSED, …). */
function tryConnect(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.setTimeout(2_000, () => {
      socket.destroy();
      resolve('timeout');
    });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('nodes in network namespaces', () => {
  it('a node in its own namespace serves from its namespace address only, reaching the services through the relays', async () => {
    const prepared = await prepareClusterServices({ partitions: 4 });
    services.push(prepared);
    const namespace = await lab!.addNamespace();
    // A port nothing listens on at this machine's 127.0.0.1, so that the check below is exact.
    const port = await freePort();
    const node = await startNode({
      nodeId: `${prepared.runId}-ns1`,
      role: 'all',
      host: namespace.address,
      port,
      env: { ...prepared.env, ...lab!.servicesEnv(prepared.env) },
      wrap: namespace.wrap,
    });
    nodes.push(node);
    expect(node.url).toBe(`http://${namespace.address}:${port}`);
    expect(node.output()).toContain(`hongbao listening on http://${namespace.address}:${port}`);
    expect((await fetch(`${node.url}/readyz`)).status).toBe(200);

    // Not on this machine's loopback: only the namespace address answers.
    expect(await tryConnect('127.0.0.1', port)).toBe('ECONNREFUSED');

    // A whole round through the namespace: a deposit and a send (Postgres via the bridge relay),
    // opens (Kafka via the namespace's 127.0.0.1:9092 relay), booked by the ledger.
    const runId = prepared.runId;
    const deposit = await call(node.url, 'POST', '/v1/wallet/deposits', `${runId}-admin`, { admin: true, body: { userId: `${runId}-s`, amount: '10.00' }, headers: { 'idempotency-key': 'd' } });
    expect(deposit.status, JSON.stringify(deposit.body)).toBe(201);
    const sent = await call(node.url, 'POST', '/v1/packets', `${runId}-s`, { body: { type: 'group_lucky', targetId: 'g', count: 3, amount: '10.00' }, headers: { 'idempotency-key': 's' } });
    expect(sent.status, JSON.stringify(sent.body)).toBe(201);
    const packetId: string = sent.body.packet.id;
    const amounts: string[] = [];
    for (const user of ['a', 'b', 'c']) {
      const opened = await call(node.url, 'POST', `/v1/packets/${packetId}/open`, `${runId}-${user}`);
      expect(opened.body.state, JSON.stringify(opened.body)).toBe('claimed');
      amounts.push(opened.body.amount);
    }
    for (let attempt = 0; ; attempt += 1) {
      const page = await call(node.url, 'GET', `/v1/packets/${packetId}`, `${runId}-s`);
      if (page.body.packet?.status === 'finished') break;
      expect(attempt, 'the ledger books the claims').toBeLessThan(100);
      await sleep(100);
    }
    const reconcile = await call(node.url, 'POST', '/v1/admin/reconcile', `${runId}-admin`, { admin: true, timeoutMs: 30_000 });
    expect(reconcile.body.discrepancies).toEqual([]);
    expect(node.output()).toContain(`database: postgres://${lab!.bridgeAddress}:5432/`);
  });
});
