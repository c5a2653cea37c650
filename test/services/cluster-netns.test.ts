// Nodes on separate hosts, not just separate processes: each node runs in a network namespace of
// its own (a veth pair on a bridge the test makes and removes), listens on its namespace address
// and reaches the services only through relays (test/support/netns.ts). The first test proves
// the plumbing: a node in a namespace serves a whole send/open/book round from its own address,
// and is not reachable on 127.0.0.1, so nothing here depends on sharing the loopback. The second
// puts two engine nodes and the ledger in three namespaces, all on the same port: they form one
// cluster (GET /v1/admin/cluster lists them by their namespace URLs, every slot owned once), and
// a request sent to the node that does not own the packet is forwarded over the bridge to the
// one that does and answered correctly; the books are checked afterwards.
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  call,
  checkCluster,
  fenOf,
  openUntilAnswered,
  prepareClusterServices,
  sendPackets,
  slotOfPacket,
  startNode,
  type AcknowledgedClaim,
  type ClusterServices,
  type NodeHandle,
} from '../support/cluster.js';
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

  it('nodes in three namespaces form one cluster, and a request to a node that does not own the packet is forwarded to the one that does', async () => {
    const partitions = 4;
    const prepared = await prepareClusterServices({ partitions });
    services.push(prepared);
    const env = { ...prepared.env, ...lab!.servicesEnv(prepared.env) };
    // The same port everywhere: each namespace has its own addresses and ports.
    const port = await freePort();
    const spaces = [await lab!.addNamespace(), await lab!.addNamespace(), await lab!.addNamespace()];
    const roles = ['engine', 'engine', 'ledger'] as const;
    const started = await Promise.all(
      spaces.map((space, index) =>
        startNode({ nodeId: `${prepared.runId}-ns${index + 1}`, role: roles[index]!, host: space.address, port, env, wrap: space.wrap }),
      ),
    );
    nodes.push(...started);
    const engines = started.slice(0, 2);
    const admin = `${prepared.runId}-admin`;

    // One cluster: every node listed by its namespace URL, every slot owned by exactly one engine.
    let view: any;
    for (let attempt = 0; ; attempt += 1) {
      view = (await call(engines[0]!.url, 'GET', '/v1/admin/cluster', admin, { admin: true })).body;
      const owned = (view.nodes ?? []).flatMap((node: any) => node.owns);
      const everyEngineOwns = engines.every((engine) => view.nodes?.find((node: any) => node.id === engine.nodeId)?.owns.length > 0);
      if (view.nodes?.length === 3 && everyEngineOwns && owned.length === partitions && new Set(owned).size === partitions) break;
      expect(attempt, `the cluster as node 1 sees it: ${JSON.stringify(view)}`).toBeLessThan(150);
      await sleep(200);
    }
    console.log(`GET /v1/admin/cluster from ${engines[0]!.url}: ${JSON.stringify(view)}`);
    expect(view.self).toBe(engines[0]!.nodeId);
    expect(view.nodes.map((node: any) => ({ id: node.id, url: node.url, role: node.role })).sort((a: any, b: any) => a.id.localeCompare(b.id))).toEqual(
      started.map((node) => ({ id: node.nodeId, url: `http://${spaces[started.indexOf(node)]!.address}:${port}`, role: node.role })),
    );
    expect(view.nodes.find((node: any) => node.role === 'ledger').owns).toEqual([]);
    const seenFromTwo = (await call(engines[1]!.url, 'GET', '/v1/admin/cluster', admin, { admin: true })).body;
    expect(seenFromTwo.self).toBe(engines[1]!.nodeId);
    expect(seenFromTwo.nodes.map((node: any) => node.url).sort()).toEqual(view.nodes.map((node: any) => node.url).sort());

    // Packets until each engine owns at least one of them (by the slot of its id).
    const ownerOf = (packetId: string) => engines.find((engine) => view.nodes.find((node: any) => node.id === engine.nodeId).owns.includes(slotOfPacket(packetId, partitions)))!;
    const sent = await sendPackets(
      engines.map((engine) => engine.url),
      { runId: prepared.runId, packets: 8, shares: 5, amount: '5.00' },
    );
    const byOwner = new Map(engines.map((engine) => [engine, sent.packets.filter((packet) => ownerOf(packet.id) === engine)]));
    for (const engine of engines) expect(byOwner.get(engine)!.length, `packets owned by ${engine.nodeId}`).toBeGreaterThan(0);

    // Each packet opened only through the engine that does not own it: forwarded, answered as the owner decides.
    const forwardsBefore = await Promise.all(engines.map(async (engine) => (await engine.metrics()).value('hongbao_forwards_total', { outcome: 'ok' })));
    const acknowledged: AcknowledgedClaim[] = [];
    for (const packet of sent.packets) {
      const other = engines.find((engine) => engine !== ownerOf(packet.id))!;
      for (let index = 0; index < 2; index += 1) {
        const userId = `${prepared.runId}-f${sent.packets.indexOf(packet)}-${index}`;
        const result = await openUntilAnswered(() => [other.url], { next: 0 }, packet.id, userId, Date.now() + 30_000);
        expect(result.reply?.body.state, `${packet.id} via ${other.nodeId}: ${JSON.stringify(result.reply?.body ?? result)}`).toBe('claimed');
        if (result.reply === undefined) continue;
        acknowledged.push({ packetId: packet.id, userId, amountFen: fenOf(result.reply.body.amount), seq: result.reply.body.seq, via: other.url, sentAtMs: result.sentAtMs, atMs: Date.now() });
        // The same user again, now through the owner: the same claim, nothing more.
        const again = await openUntilAnswered(() => [ownerOf(packet.id).url], { next: 0 }, packet.id, userId, Date.now() + 30_000);
        expect(again.reply?.body).toEqual({ state: 'already_claimed', amount: result.reply.body.amount, seq: result.reply.body.seq });
      }
      // The result page, asked of the non-owner, is the owner's.
      const page = await call(other.url, 'GET', `/v1/packets/${packet.id}`, sent.sender);
      expect(page.status, JSON.stringify(page.body)).toBe(200);
      expect(page.body.packet.id).toBe(packet.id);
    }
    const forwardsAfter = await Promise.all(engines.map(async (engine) => (await engine.metrics()).value('hongbao_forwards_total', { outcome: 'ok' })));
    console.log(`forwards answered by the owner: ${engines.map((engine, index) => `${engine.nodeId} ${forwardsAfter[index]! - forwardsBefore[index]!}`).join(', ')}`);
    for (const [index, engine] of engines.entries()) {
      const passedOn = byOwner.get(engines[1 - index]!)!.length * 3; // two opens and a page per packet the other one owns
      expect(forwardsAfter[index]! - forwardsBefore[index]!, `forwards by ${engine.nodeId}`).toBeGreaterThanOrEqual(passedOn);
    }

    // The books, from the database: every claim there, every packet drained to its total, clean.
    const check = await checkCluster({
      databaseUrl: prepared.databaseUrl,
      urls: () => engines.map((engine) => engine.url),
      runId: prepared.runId,
      packets: sent.packets,
      acknowledged,
      depositedFen: sent.depositedFen,
    });
    expect(check.problems).toEqual([]);
  });
});
