// Proves forwarding between nodes over real sockets. Node B (the owner) is the real product;
// node A is the real product too, but its route() says every packet is B's. Through A, grab,
// open and the result page are decided by B alone and B's answers come back verbatim; an owner
// that hangs, is down, or is one too many in flight gives the busy 503 within the bound; a
// forged or stale Hongbao-Forwarded header is refused (401) and changes nothing; a forwarded
// request is never forwarded again; the caller's tokens are taken once; and
// GET /v1/admin/cluster answers the cluster view, to admins only.
import { serve, type ServerType } from '@hono/node-server';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Registry, type Counter, type Gauge } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClusterView, HongbaoService, PacketRoute } from '../../src/app/service.js';
import { DEFAULT_BODY_BYTES_MAX, DEFAULT_TOKEN_TTL_MAX_SECONDS } from '../../src/config.js';
import { createApp } from '../../src/http/app.js';
import { issueToken } from '../../src/http/auth.js';
import { FORWARDED_HEADER, forwardKey, signForward } from '../../src/http/forward-signature.js';
import { silentLogger, startHarness, TEST_SECRET, type Harness } from '../support/harness.js';
import { apiClient, expectError } from '../support/http-client.js';
import { payInSandbox, signedNotification } from '../support/payments.js';

/** The bounds of an impatient node A, short so that a hanging owner costs the suite little. */
const TIMEOUT_MS = 400;
const IN_FLIGHT_MAX = 2;
/** B's per-user buckets, small enough to reach; A admits through B's, as Redis shares them between nodes. */
const REQUESTS_BURST = 20;
const OPEN_BURST = 4;

/** Names of this run only: on the services run the buckets live in Redis and outlive the test. */
const run = `fw${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;
const user = (name: string) => `${run}-${name}`;

let owner: Harness; // node B
let firstNode: Harness; // node A's own product: its engine must never see B's packets
let ownerUrl: string;
/** Node A with the production bounds, and the same node with short ones (the hanging owners). */
let nodeA: FirstNode;
let impatientA: FirstNode;
const servers: ServerType[] = [];
/** What A's route() answers; a test points it at a hanging or a closed port. */
let routeOfA: () => PacketRoute;
/** Calls of A's own packet use cases: forwarding must leave them at 0. */
const seenByA = { grab: 0, open: 0, resultPage: 0, paymentReturn: 0, paymentNotification: 0 };
let clusterOfA: ClusterView | undefined;

interface FirstNode {
  readonly url: string;
  /** Its own registry: the harness's app already registered the http metrics on the product's. */
  readonly metrics: Registry;
}

/** Node A's service: the real one, but every packet belongs to B, and admission is B's (a shared bucket). */
function firstNodeService(real: HongbaoService, admission: HongbaoService, metrics: Registry): HongbaoService {
  return new Proxy(real, {
    get(target, property) {
      if (property === 'route') return () => routeOfA();
      if (property === 'admit') return admission.admit.bind(admission);
      if (property === 'cluster') return async () => clusterOfA ?? target.cluster();
      if (property === 'metrics') return metrics;
      if (property === 'grab' || property === 'open' || property === 'resultPage' || property === 'paymentReturn' || property === 'paymentNotification') {
        seenByA[property] += 1;
      }
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

async function listen(fetch: (request: Request) => Response | Promise<Response>): Promise<string> {
  const server = await new Promise<ServerType>((resolve) => {
    const started = serve({ fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(started));
  });
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A server that accepts connections and never answers. */
async function hangingServer(): Promise<{ url: string; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A port where nothing listens any more. */
async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}

interface Raw {
  status: number;
  /** Hongbao-Node: the node that decided the answer. */
  node: string | null;
  contentType: string | null;
  retryAfter: string | null;
  text: string;
  body: any;
}

async function raw(base: string, method: string, path: string, name: string | undefined, headers: Record<string, string> = {}, body?: string): Promise<Raw> {
  const authorization: Record<string, string> = name === undefined ? {} : { authorization: `Bearer ${await owner.token(name)}` };
  const response = await fetch(`${base}${path}`, { method, headers: { ...authorization, ...headers }, ...(body === undefined ? {} : { body }) });
  const text = await response.text();
  return { status: response.status, node: response.headers.get('hongbao-node'), contentType: response.headers.get('content-type'), retryAfter: response.headers.get('retry-after'), text, body: JSON.parse(text) };
}

const through =
  (node: () => FirstNode) =>
  (method: string, path: string, name: string | undefined, headers?: Record<string, string>, body?: string) =>
    raw(node().url, method, path, name, headers, body);
const throughA = through(() => nodeA);
const throughImpatientA = through(() => impatientA);
const atB = (method: string, path: string, name: string | undefined, headers?: Record<string, string>, body?: string) => raw(ownerUrl, method, path, name, headers, body);

async function forwards(node = impatientA): Promise<Record<string, number>> {
  const counter = node.metrics.getSingleMetric('hongbao_forwards_total') as Counter;
  const values = (await counter.get()).values;
  return Object.fromEntries(values.map((value) => [String(value.labels.outcome), value.value]));
}

async function forwardsInFlight(node = impatientA): Promise<number> {
  const gauge = node.metrics.getSingleMetric('hongbao_forwards_in_flight') as Gauge;
  return (await gauge.get()).values[0]?.value ?? 0;
}

const toOwner = (): PacketRoute => ({ kind: 'forward', nodeId: 'node-b', url: ownerUrl });
const client = apiClient(() => owner, run);

beforeAll(async () => {
  [owner, firstNode] = await Promise.all([
    startHarness({
      // The owner takes payments: its own sandbox (mounted on its own port) signs them.
      withSandbox: {},
      node: { id: 'node-b', url: 'http://node-b.test' },
      requestRate: { burst: REQUESTS_BURST, perSecond: 0.001 },
      openRate: { burst: OPEN_BURST, perSecond: 0.001 },
    }),
    startHarness({ withSandbox: {}, node: { id: 'node-a', url: 'http://node-a.test' } }),
  ]);
  routeOfA = toOwner;
  ownerUrl = await listen(owner.app.fetch);
  const startFirstNode = async (forwarding: { timeoutMs: number; inFlightMax: number } | undefined): Promise<FirstNode> => {
    const metrics = new Registry();
    const app = createApp(firstNodeService(firstNode.hongbao.service, owner.hongbao.service, metrics), {
      authSecret: TEST_SECRET,
      logger: silentLogger,
      bodyBytesMax: DEFAULT_BODY_BYTES_MAX,
      tokenTtlMaxSeconds: DEFAULT_TOKEN_TTL_MAX_SECONDS,
      ...(forwarding === undefined ? {} : { forwarding }),
    });
    return { url: await listen(app.fetch), metrics };
  };
  nodeA = await startFirstNode(undefined);
  impatientA = await startFirstNode({ timeoutMs: TIMEOUT_MS, inFlightMax: IN_FLIGHT_MAX });
});
afterAll(async () => {
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  await Promise.all([owner?.stop(), firstNode?.stop()]);
});

describe('grab, open and the result page through a node that does not own the packet', () => {
  it('are decided by the owner alone: its actor, one claim credited once, nothing at the first node', async () => {
    const [sender, opener] = [user('send'), user('open')];
    await client.fund(sender, '10.00');
    const packet = await client.sendOk(sender, { type: 'group_lucky', targetId: 'g', count: 3, amount: '3.00' });
    const before = { ...seenByA };
    const forwardsBefore = await forwards(nodeA);

    const grab = await throughA('POST', `/v1/packets/${packet.id}/grab`, opener);
    expect(grab.status, grab.text).toBe(200);
    expect(grab.body).toEqual({ state: 'openable' });
    const open = await throughA('POST', `/v1/packets/${packet.id}/open`, opener);
    expect(open.status).toBe(200);
    expect(open.body).toMatchObject({ state: 'claimed', seq: 1 });
    // The answer names the node that decided it, through the forward.
    expect([grab.node, open.node]).toEqual(['node-b', 'node-b']);
    const again = await throughA('POST', `/v1/packets/${packet.id}/open`, opener);
    expect(again.body).toEqual({ state: 'already_claimed', amount: open.body.amount, seq: 1 });
    const page = await throughA('GET', `/v1/packets/${packet.id}`, opener);
    expect(page.status).toBe(200);
    expect(page.body.myAmount).toBe(open.body.amount);
    expect(page.text).toBe((await atB('GET', `/v1/packets/${packet.id}`, opener)).text);

    // B decided; A's engine and its use cases never saw the packet.
    expect(owner.hongbao.engine.stats.actors).toBeGreaterThanOrEqual(1);
    expect(firstNode.hongbao.engine.stats.actors).toBe(0);
    expect(seenByA).toEqual(before);
    expect((await forwards(nodeA)).ok).toBe(forwardsBefore.ok! + 4);
    expect(await firstNode.hongbao.service.resultPage(packet.id, opener)).toEqual({ kind: 'not_found' });
    // Credited once, at the owner.
    expect(await client.balance(opener)).toBe(open.body.amount);
    expect((await firstNode.hongbao.service.wallet(opener)).balanceFen).toBe(0);
    await client.expectConserved();
  });

  it('pass the owner’s answers back verbatim: 404, 403 and 429 with its Retry-After', async () => {
    const [sender, target, stranger, opener] = [user('vsend'), user('vtarget'), user('vstranger'), user('vopen')];
    const unknown = '/v1/packets/p_AAAAAAAAAAAAAAAAAAAAAA';
    const notFound = await throughA('GET', unknown, stranger);
    expectError(notFound, 404, 'not_found');
    expect(notFound).toEqual(await atB('GET', unknown, stranger));

    await client.fund(sender, '10.00');
    const personal = await client.sendOk(sender, { type: 'personal', targetId: target, count: 1, amount: '1.00' });
    const forbidden = await throughA('GET', `/v1/packets/${personal.id}`, stranger);
    expectError(forbidden, 403, 'forbidden');
    expect(forbidden).toEqual(await atB('GET', `/v1/packets/${personal.id}`, stranger));

    // The open bucket is taken at the owner, once per open: OPEN_BURST opens pass, the next is B's 429.
    const group = await client.sendOk(sender, { type: 'group_fixed', targetId: 'g', count: 2, amount: '1.00' });
    for (let attempt = 0; attempt < OPEN_BURST; attempt += 1) {
      expect((await throughA('POST', `/v1/packets/${group.id}/open`, opener)).status).toBe(200);
    }
    const limited = await throughA('POST', `/v1/packets/${group.id}/open`, opener);
    expectError(limited, 429, 'rate_limited');
    expect(limited.retryAfter).toBe('1000');
    expect(limited.contentType).toMatch(/^application\/json/);
    expect(limited).toEqual(await atB('POST', `/v1/packets/${group.id}/open`, opener));
  });
});

describe('a payment through a node that does not own the packet', () => {
  it('the return and the provider’s notification travel to the owner with their bodies and signature headers, and are decided there once', async () => {
    const [sender, opener] = [user('psend'), user('popen')];
    const sent = await owner.call('POST', '/v1/packets', {
      user: sender,
      body: { type: 'group_lucky', targetId: 'g', count: 2, amount: '2.00', payWith: 'sandbox' },
      headers: { 'idempotency-key': `${run}-pay` },
    });
    expect(sent.status, JSON.stringify(sent.body)).toBe(201);
    const { packet, payment } = sent.body;
    const before = { ...seenByA };
    const returnPayload = await payInSandbox(owner, payment, 'success', 'never');
    const json = { 'content-type': 'application/json' };
    const returned = await throughA('POST', `/v1/packets/${packet.id}/payment/return`, sender, json, JSON.stringify({ returnPayload }));
    expect(returned.status, returned.text).toBe(200);
    expect(returned.node).toBe('node-b');
    expect(returned.body.packet.status).toBe('awaiting_funds');
    const open = await throughA('POST', `/v1/packets/${packet.id}/open`, opener);
    expect(open.body).toMatchObject({ state: 'claimed', seq: 1 });

    const notification = signedNotification(owner, { orderId: payment.orderId, status: 'paid', amount: '2.00' });
    const notified = await throughA('POST', '/v1/payments/sandbox/notify', undefined, notification.headers, notification.body);
    expect(notified.status, notified.text).toBe(200);
    expect(notified.body).toEqual({ code: 'SUCCESS' });
    expect(notified.node).toBe('node-b');
    // The nonce was checked once, at the owner: the same message again is a replay there.
    expectError(await throughA('POST', '/v1/payments/sandbox/notify', undefined, notification.headers, notification.body), 401, 'unauthorized');
    // A tampered body travels too, and the owner refuses it.
    expectError(await throughA('POST', '/v1/payments/sandbox/notify', undefined, notification.headers, notification.body.replace('2.00', '0.01')), 401, 'unauthorized');

    expect(seenByA).toEqual(before);
    expect(firstNode.hongbao.engine.stats.actors).toBe(0);
    expect((await atB('GET', `/v1/packets/${packet.id}`, sender)).body.packet.status).toBe('live');
    expect(await client.balance(opener)).toBe(open.body.amount);
    await client.expectConserved();
  });
});

describe('an owner that cannot answer: the busy 503 within the bound, never a hang', () => {
  it('an owner that accepts and never replies → 503 unavailable with Retry-After after the timeout', async () => {
    const hanging = await hangingServer();
    routeOfA = () => ({ kind: 'forward', nodeId: 'node-h', url: hanging.url });
    try {
      const before = await forwards();
      const startedMs = performance.now();
      const reply = await throughImpatientA('POST', '/v1/packets/p_AAAAAAAAAAAAAAAAAAAAAA/open', user('hang'));
      const elapsedMs = performance.now() - startedMs;
      expectError(reply, 503, 'unavailable');
      expect(reply.retryAfter).toBe('1');
      expect(reply.body.error.message).toMatch(/node-h.*did not answer within 400 ms/);
      expect(elapsedMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 20);
      expect(elapsedMs).toBeLessThan(TIMEOUT_MS + 1_500);
      expect((await forwards()).timeout).toBe(before.timeout! + 1);
      expect(await forwardsInFlight()).toBe(0);
    } finally {
      routeOfA = toOwner;
      await hanging.close();
    }
  });

  it('past the bound of forwards in flight → 503 at once, without waiting for the owner', async () => {
    const hanging = await hangingServer();
    routeOfA = () => ({ kind: 'forward', nodeId: 'node-h', url: hanging.url });
    try {
      const before = await forwards();
      const held = Array.from({ length: IN_FLIGHT_MAX }, (_, index) => throughImpatientA('POST', '/v1/packets/p_AAAAAAAAAAAAAAAAAAAAAA/grab', user(`held${index}`)));
      await expect.poll(forwardsInFlight).toBe(IN_FLIGHT_MAX);
      const startedMs = performance.now();
      const refused = await throughImpatientA('POST', '/v1/packets/p_AAAAAAAAAAAAAAAAAAAAAA/grab', user('held-extra'));
      expect(performance.now() - startedMs).toBeLessThan(TIMEOUT_MS / 2);
      expectError(refused, 503, 'unavailable');
      expect(refused.retryAfter).toBe('1');
      expect(refused.body.error.message).toMatch(/too many requests are being passed/);
      for (const reply of await Promise.all(held)) expectError(reply, 503, 'unavailable');
      const after = await forwards();
      expect(after.overloaded).toBe(before.overloaded! + 1);
      expect(after.timeout).toBe(before.timeout! + IN_FLIGHT_MAX);
    } finally {
      routeOfA = toOwner;
      await hanging.close();
    }
  });

  it('an unreachable owner (a closed port) → 503 unavailable at once', async () => {
    const url = await closedPortUrl();
    routeOfA = () => ({ kind: 'forward', nodeId: 'node-gone', url });
    try {
      const before = await forwards();
      const reply = await throughImpatientA('GET', '/v1/packets/p_AAAAAAAAAAAAAAAAAAAAAA', user('gone'));
      expectError(reply, 503, 'unavailable');
      expect(reply.retryAfter).toBe('1');
      expect(reply.body.error.message).toMatch(/node-gone.*cannot be reached/);
      expect((await forwards()).unreachable).toBe(before.unreachable! + 1);
    } finally {
      routeOfA = toOwner;
    }
  });

  it('a busy route (a handover): an open answers the busy state with its retryAfterMs; grab and the result page the 503 with its Retry-After', async () => {
    routeOfA = () => ({ kind: 'busy', retryAfterMs: 2_500 });
    try {
      const before = await forwards();
      const opened = await throughImpatientA('POST', '/v1/packets/p_AAAAAAAAAAAAAAAAAAAAAA/open', user('moving'));
      expect(opened.status).toBe(200);
      expect(opened.body).toEqual({ state: 'busy', retryAfterMs: 2_500 });
      const grabbed = await throughImpatientA('POST', '/v1/packets/p_AAAAAAAAAAAAAAAAAAAAAA/grab', user('moving'));
      expectError(grabbed, 503, 'unavailable');
      expect(grabbed.retryAfter).toBe('3');
      expect((await forwards()).busy).toBe(before.busy! + 2);
    } finally {
      routeOfA = toOwner;
    }
  });
});

describe('the Hongbao-Forwarded header', () => {
  const key = forwardKey(TEST_SECRET);
  const signed = async (method: string, path: string, name: string, atMs = Date.now(), signingKey = key) =>
    signForward(signingKey, 'node-a', { method, path, authorization: `Bearer ${await owner.token(name)}` }, atMs);

  it('forged, stale, moved to another request or malformed → 401 unauthorized at the owner, and nothing changes', async () => {
    const [sender, hostile] = [user('hsend'), user('hostile')];
    await client.fund(sender, '10.00');
    const packet = await client.sendOk(sender, { type: 'group_lucky', targetId: 'g', count: 2, amount: '2.00' });
    const open = `/v1/packets/${packet.id}/open`;
    const forgeries = {
      zeros: `t=${Date.now()},from=node-a,v1=${'0'.repeat(64)}`,
      stale: await signed('POST', open, hostile, Date.now() - 31_000),
      future: await signed('POST', open, hostile, Date.now() + 31_000),
      otherPath: await signed('POST', `/v1/packets/${packet.id}/grab`, hostile),
      otherMethod: await signed('GET', open, hostile),
      otherCaller: await signed('POST', open, sender),
      otherKey: await signed('POST', open, hostile, Date.now(), forwardKey('another-secret')),
      malformed: 'yes please',
    };
    for (const [name, header] of Object.entries(forgeries)) {
      const reply = await atB('POST', open, hostile, { [FORWARDED_HEADER]: header });
      expectError(reply, 401, 'unauthorized');
      expect(reply.body.error.message, name).toMatch(/Hongbao-Forwarded header/);
    }
    const page = await client.page(packet.id, sender);
    expect(page.packet.claimedCount).toBe(0);
    // The header, signed right, is accepted: the check is not a blanket refusal.
    const genuine = await atB('POST', open, hostile, { [FORWARDED_HEADER]: await signed('POST', open, hostile) });
    expect(genuine.body.state).toBe('claimed');
  });

  it('a genuine forwarded request at a node that does not own the packet → 503 busy, never forwarded again', async () => {
    const [sender, opener] = [user('lsend'), user('lopen')];
    await client.fund(sender, '10.00');
    const packet = await client.sendOk(sender, { type: 'group_lucky', targetId: 'g', count: 2, amount: '2.00' });
    const open = `/v1/packets/${packet.id}/open`;
    const before = await forwards(nodeA);
    const reply = await throughA('POST', open, opener, { [FORWARDED_HEADER]: await signed('POST', open, opener) });
    expectError(reply, 503, 'unavailable');
    expect(reply.retryAfter).toBe('1');
    expect(reply.body.error.message).toMatch(/no longer owns/);
    const after = await forwards(nodeA);
    expect(after.busy).toBe(before.busy! + 1);
    expect(after.ok).toBe(before.ok);
    expect((await client.page(packet.id, sender)).packet.claimedCount).toBe(0);
  });
});

describe('admission through two nodes', () => {
  it('each token is taken once: REQUESTS_BURST requests through A pass, the next is refused (2 per request would stop at half)', async () => {
    const [sender, grabber] = [user('asend'), user('agrab')];
    await client.fund(sender, '10.00');
    const packet = await client.sendOk(sender, { type: 'group_lucky', targetId: 'g', count: 2, amount: '2.00' });
    for (let request = 1; request <= REQUESTS_BURST; request += 1) {
      const reply = await throughA('POST', `/v1/packets/${packet.id}/grab`, grabber);
      expect(reply.status, `request ${request}: ${reply.text}`).toBe(200);
    }
    expectError(await throughA('POST', `/v1/packets/${packet.id}/grab`, grabber), 429, 'rate_limited');
  });
});

describe('GET /v1/admin/cluster', () => {
  it('answers the cluster view, exactly its fields, to an admin', async () => {
    const admin = user('ops');
    const token = await issueToken(TEST_SECRET, admin, { admin: true });
    const atOwner = await fetch(`${ownerUrl}/v1/admin/cluster`, { headers: { authorization: `Bearer ${token}` } });
    expect(atOwner.status).toBe(200);
    // Embedded, the one table-log partition; on Kafka, every partition of the topic (one node owns all).
    const slots = owner.hongbao.cluster === undefined ? [0] : Array.from({ length: owner.hongbao.cluster.slots.assignedSlots().length }, (_, slot) => slot);
    expect(slots.length).toBeGreaterThan(0);
    expect(await atOwner.json()).toEqual({ self: 'node-b', nodes: [{ id: 'node-b', url: 'http://node-b.test', role: 'all', owns: slots }] });

    const view = {
      self: 'node-a',
      nodes: [
        { id: 'node-a', url: 'http://a:3000', role: 'engine', owns: [1, 3], lagMs: 5 },
        { id: 'node-b', url: 'http://b:3000', role: 'ledger', owns: [] },
      ],
    } as ClusterView;
    clusterOfA = view;
    try {
      const atFirst = await fetch(`${nodeA.url}/v1/admin/cluster`, { headers: { authorization: `Bearer ${token}` } });
      expect(await atFirst.text()).toBe(
        JSON.stringify({
          self: 'node-a',
          nodes: [
            { id: 'node-a', url: 'http://a:3000', role: 'engine', owns: [1, 3] },
            { id: 'node-b', url: 'http://b:3000', role: 'ledger', owns: [] },
          ],
        }),
      );
    } finally {
      clusterOfA = undefined;
    }
  });

  it('refuses a user token (403) and no token (401), as the other admin routes', async () => {
    expectError(await atB('GET', '/v1/admin/cluster', user('notadmin')), 403, 'forbidden');
    const anonymous = await fetch(`${ownerUrl}/v1/admin/cluster`);
    expectError({ status: anonymous.status, body: await anonymous.json() }, 401, 'unauthorized');
  });
});
