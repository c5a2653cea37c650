// A cluster of real server processes for one test: a fresh database on the Postgres server, a
// topic of its own, N engine nodes and the ledger(s) as children (LOG_LEVEL=info, so a node's
// own log can be read afterwards); a load driver that spreads opens over every node round robin,
// as a plain load balancer would, and records every acknowledged claim and who answered it; and
// a checker that reads the real database afterwards: nothing acknowledged is lost, nothing is
// paid twice, every packet drains to exactly its total, the books balance to the fen.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import pg from 'pg';
import { issueToken } from '../../src/http/auth.js';
import { freePort } from './process.js';
import { freshServerDatabase } from './server-database.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export const CLUSTER_SECRET = 'cluster-test-secret';
export const CLUSTER_SEED_SECRET = 'cluster-test-seed';

/** How long a node may take to answer /readyz 200 after it was started. */
export const NODE_READY_TIMEOUT_MS = 90_000;
/** A request that has no answer by then is given up (a paused node answers nothing). */
export const REQUEST_TIMEOUT_MS = 3_000;
/** The longest pause the driver takes on a busy/503/429 before it asks again. */
const RETRY_PAUSE_MS_MAX = 1_000;
/** Output kept per process incarnation (the tail); the log of a long load is megabytes. */
const OUTPUT_CHARS_MAX = 4_000_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- HTTP with test tokens

export interface Reply {
  readonly status: number;
  readonly body: any;
  readonly headers: Headers;
}

const tokens = new Map<string, Promise<string>>();
function tokenFor(userId: string, admin: boolean): Promise<string> {
  const key = `${userId}:${admin}`;
  let token = tokens.get(key);
  if (token === undefined) {
    token = issueToken(CLUSTER_SECRET, userId, { admin });
    tokens.set(key, token);
  }
  return token;
}

export interface CallOptions {
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
  readonly admin?: boolean;
  readonly timeoutMs?: number;
}

/** One request as `user`; rejects on a network error or a timeout (no answer is not an answer). */
export async function call(baseUrl: string, method: string, path: string, user: string, options: CallOptions = {}): Promise<Reply> {
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${await tokenFor(user, options.admin ?? user === 'admin')}`,
      'content-type': 'application/json',
      ...options.headers,
    },
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
    signal: AbortSignal.timeout(options.timeoutMs ?? REQUEST_TIMEOUT_MS),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON (metrics): keep the text
  }
  return { status: response.status, body, headers: response.headers };
}

/** Test-side reading of a two-decimal yuan string as bigint fen, with no float. */
export function fenOf(yuan: string): bigint {
  const match = /^(\d+)\.(\d\d)$/.exec(yuan);
  if (match === null) throw new Error(`not a two-decimal yuan string: ${yuan}`);
  return BigInt(match[1]!) * 100n + BigInt(match[2]!);
}

// ---------------------------------------------------------------- one node process

export type Role = 'engine' | 'ledger' | 'all';
export type Signal = 'SIGKILL' | 'SIGSTOP' | 'SIGCONT' | 'SIGTERM';

export interface NodeSpec {
  readonly nodeId: string;
  readonly role: Role;
  /** Where it listens (HOST) and the port. */
  readonly host: string;
  readonly port: number;
  /** ADVERTISE_URL, and where the test reaches it (default http://host:port). */
  readonly url?: string;
  /** The environment besides ROLE, NODE_ID, HOST, PORT and ADVERTISE_URL. */
  readonly env: Record<string, string>;
  /** A command the node runs under, e.g. ['ip', 'netns', 'exec', 'hb1a'] (it must exec, not fork). */
  readonly wrap?: readonly string[];
}

export interface Incarnation {
  readonly pid: number | undefined;
  readonly startedAtMs: number;
  output: string;
  exit?: { code: number | null; signal: NodeJS.Signals | null; atMs: number };
}

export interface NodeHandle {
  readonly nodeId: string;
  readonly role: Role;
  readonly url: string;
  readonly port: number;
  readonly spec: NodeSpec;
  /** The running process (the last one started). */
  readonly pid: number | undefined;
  readonly alive: boolean;
  readonly paused: boolean;
  /** SIGKILL and SIGTERM resolve once the process has exited; SIGSTOP and SIGCONT at once. */
  kill(signal: Signal): Promise<void>;
  /** Kills what runs (if anything) and starts it again: same NODE_ID, same port; resolves when ready. */
  restart(): Promise<void>;
  /** Everything every incarnation printed, each headed by a `==== <nodeId> pid <pid> ====` line. */
  output(): string;
  incarnations(): readonly Incarnation[];
  /** The JSON log lines (pino) of every incarnation, or of one. */
  logs(incarnation?: Incarnation): Record<string, any>[];
  /** GET /metrics of the running process, parsed. */
  metrics(): Promise<Metrics>;
  waitReady(timeoutMs?: number): Promise<void>;
}

class NodeProcess implements NodeHandle {
  private child: ChildProcess | undefined;
  private readonly lives: Incarnation[] = [];
  paused = false;

  constructor(readonly spec: NodeSpec) {}

  get nodeId() {
    return this.spec.nodeId;
  }
  get role() {
    return this.spec.role;
  }
  get port() {
    return this.spec.port;
  }
  get url() {
    return this.spec.url ?? `http://${this.spec.host}:${this.spec.port}`;
  }
  get pid() {
    return this.child?.pid;
  }
  get alive() {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  spawn(): void {
    if (this.alive) throw new Error(`${this.nodeId} is running already (pid ${this.pid})`);
    const command = [...(this.spec.wrap ?? []), process.execPath, '--import', 'tsx', 'src/main.ts'];
    const child = spawn(command[0]!, command.slice(1), {
      cwd: ROOT,
      env: {
        ...process.env,
        LOG_LEVEL: 'info',
        ...this.spec.env,
        ROLE: this.spec.role,
        NODE_ID: this.spec.nodeId,
        HOST: this.spec.host,
        PORT: String(this.spec.port),
        ADVERTISE_URL: this.url,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const life: Incarnation = { pid: child.pid, startedAtMs: Date.now(), output: '' };
    const append = (chunk: Buffer) => {
      life.output += chunk.toString('utf8');
      if (life.output.length > OUTPUT_CHARS_MAX) life.output = life.output.slice(-OUTPUT_CHARS_MAX / 2);
    };
    child.stdout!.on('data', append);
    child.stderr!.on('data', append);
    child.once('exit', (code, signal) => (life.exit = { code, signal, atMs: Date.now() }));
    this.lives.push(life);
    this.child = child;
    this.paused = false;
  }

  async waitReady(timeoutMs = NODE_READY_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer';
    while (Date.now() < deadline) {
      if (!this.alive) throw new Error(`${this.nodeId} exited (${JSON.stringify(this.lives.at(-1)?.exit)}) before it was ready:\n${this.lives.at(-1)?.output.slice(-5_000)}`);
      try {
        const response = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(2_000) });
        if (response.status === 200) return;
        last = `${response.status} ${await response.text()}`;
      } catch (error) {
        last = (error as Error).message;
      }
      await sleep(200);
    }
    throw new Error(`${this.nodeId} not ready within ${timeoutMs} ms (last: ${last}):\n${this.lives.at(-1)?.output.slice(-5_000)}`);
  }

  async kill(signal: Signal): Promise<void> {
    const child = this.child;
    if (child === undefined || !this.alive) return;
    if (signal === 'SIGSTOP' || signal === 'SIGCONT') {
      child.kill(signal);
      this.paused = signal === 'SIGSTOP';
      return;
    }
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    // A paused process handles SIGTERM only once it runs again (SIGKILL needs no help).
    if (this.paused) child.kill('SIGCONT');
    this.paused = false;
    await exited;
  }

  async restart(): Promise<void> {
    await this.kill('SIGKILL');
    this.spawn();
    await this.waitReady();
  }

  output(): string {
    return this.lives.map((life) => `==== ${this.nodeId} pid ${life.pid} ====\n${life.output}`).join('\n');
  }

  incarnations(): readonly Incarnation[] {
    return this.lives;
  }

  logs(incarnation?: Incarnation): Record<string, any>[] {
    return (incarnation === undefined ? this.lives : [incarnation]).flatMap((life) => logLinesOf(life.output));
  }

  async metrics(): Promise<Metrics> {
    const response = await fetch(`${this.url}/metrics`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    return parseMetrics(await response.text());
  }
}

/** The pino JSON lines of a process's output (other lines, such as the start line, are left out). */
export function logLinesOf(output: string): Record<string, any>[] {
  return output.split('\n').flatMap((line) => {
    if (!line.startsWith('{')) return [];
    try {
      return [JSON.parse(line) as Record<string, any>];
    } catch {
      return [];
    }
  });
}

/** Starts one node process and waits until it is ready (or only started, with `wait: false`). */
export async function startNode(spec: NodeSpec, { wait = true }: { wait?: boolean } = {}): Promise<NodeHandle> {
  const node = new NodeProcess(spec);
  node.spawn();
  if (wait) {
    try {
      await node.waitReady();
    } catch (error) {
      await node.kill('SIGKILL');
      throw error;
    }
  }
  return node;
}

// ---------------------------------------------------------------- Prometheus text

export type Metrics = { value(name: string, labels?: Record<string, string>): number; names(): string[]; text: string };

/** Sums the samples of `name` whose labels include `labels` (0 when there is none). */
export function parseMetrics(text: string): Metrics {
  const samples = text.split('\n').flatMap((line) => {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (match === null || line.startsWith('#')) return [];
    const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((label) => [label[1]!, label[2]!]));
    return [{ name: match[1]!, labels, value: Number(match[3]) }];
  });
  return {
    text,
    names: () => [...new Set(samples.map((sample) => sample.name))],
    value: (name, labels = {}) =>
      samples
        .filter((sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value))
        .reduce((sum, sample) => sum + sample.value, 0),
  };
}

// ---------------------------------------------------------------- the cluster

export interface ClusterOptions {
  readonly engines?: number;
  readonly ledgers?: number;
  /** Partitions (slots) of the topic; 8 by default. */
  readonly partitions?: number;
  /** More environment for every node (e.g. a shorter session timeout). */
  readonly env?: Record<string, string>;
  /** Names the run in topics, NODE_IDs and users (default a random one). */
  readonly runId?: string;
}

export interface TestCluster {
  readonly runId: string;
  readonly databaseUrl: string;
  readonly topic: string;
  /** What every node gets besides its own ROLE/NODE_ID/HOST/PORT/ADVERTISE_URL. */
  readonly env: Record<string, string>;
  readonly engines: NodeHandle[];
  readonly ledgers: NodeHandle[];
  /** Every node this cluster started (also the ones added later), for the logs and cleanup. */
  readonly nodes: NodeHandle[];
  /** Starts one more node of this cluster (e.g. a second process with an existing NODE_ID). */
  addNode(options: { nodeId: string; role?: Role; port?: number; wait?: boolean }): Promise<NodeHandle>;
  /** The engine nodes whose process runs, paused or not: what a plain load balancer sends to. */
  engineUrls(): string[];
  /** The engine nodes whose process runs and is not paused. */
  liveEngineUrls(): string[];
  /** Everything every node printed, for a failed test (the tail of each). */
  output(): string;
  /** Writes every node's whole output to a folder of its own, one file per process; returns the folder. */
  saveOutput(): string;
  /** Kills every node, drops the database, deletes the topic. */
  stop(): Promise<void>;
}

const TOPIC_TIMEOUT_MS = 30_000;

function kafkaAdmin(brokers: string) {
  return new Kafka({
    clientId: 'hongbao-test-cluster',
    brokers: brokers.split(',').map((broker) => broker.trim()),
    logLevel: logLevel.NOTHING,
    connectionTimeout: 5_000,
    requestTimeout: TOPIC_TIMEOUT_MS,
  }).admin();
}

export interface ClusterServices {
  readonly runId: string;
  readonly databaseUrl: string;
  readonly topic: string;
  readonly partitions: number;
  /** What every node gets besides its own ROLE/NODE_ID/HOST/PORT/ADVERTISE_URL. */
  readonly env: Record<string, string>;
  /** Drops the database and deletes the topic. */
  drop(): Promise<void>;
}

/** A fresh database on the Postgres server and a topic of its own, and the settings of a node on them. */
export async function prepareClusterServices(options: Pick<ClusterOptions, 'partitions' | 'env' | 'runId'> = {}): Promise<ClusterServices> {
  const runId = options.runId ?? `c${Date.now().toString(36)}${Math.floor(Math.random() * 1e4).toString(36)}`;
  const brokers = process.env.KAFKA_BROKERS ?? '127.0.0.1:9092';
  const database = await freshServerDatabase(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test');
  const topic = `hongbao-cluster-${runId}`;
  const partitions = options.partitions ?? 8;
  const drop = async () => {
    await database.drop().catch(() => {});
    const cleaner = kafkaAdmin(brokers);
    await cleaner
      .connect()
      .then(() => cleaner.deleteTopics({ topics: [topic], timeout: TOPIC_TIMEOUT_MS }))
      .catch(() => {})
      .finally(() => cleaner.disconnect());
  };
  // Created here, once, with its partitions: the nodes start together and none of them races
  // the others to create it.
  const admin = kafkaAdmin(brokers);
  try {
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }], waitForLeaders: true, timeout: TOPIC_TIMEOUT_MS });
  } catch (error) {
    await drop();
    throw error;
  } finally {
    await admin.disconnect();
  }
  const env: Record<string, string> = {
    AUTH_SECRET: CLUSTER_SECRET,
    SEED_SECRET: CLUSTER_SEED_SECRET,
    DATABASE_URL: database.url,
    KAFKA_BROKERS: brokers,
    KAFKA_TOPIC: topic,
    KAFKA_PARTITIONS: String(partitions),
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    // The load comes from few test users (the sender, the admin): the per-user request bucket
    // is not what these tests are about. Opens keep the product's limits.
    REQUESTS_BURST: '1000000',
    REQUESTS_PER_SECOND: '1000000',
    REQUESTS_IN_FLIGHT_MAX: '100000',
    ...options.env,
  };
  return { runId, databaseUrl: database.url, topic, partitions, env, drop };
}

export async function startCluster(options: ClusterOptions = {}): Promise<TestCluster> {
  const services = await prepareClusterServices(options);
  const { runId, env, topic } = services;
  const nodes: NodeHandle[] = [];
  const engines: NodeHandle[] = [];
  const ledgers: NodeHandle[] = [];
  const addNode: TestCluster['addNode'] = async ({ nodeId, role = 'engine', port, wait = true }) => {
    const node = new NodeProcess({ nodeId, role, host: '127.0.0.1', port: port ?? (await freePort()), env });
    nodes.push(node);
    node.spawn();
    if (wait) await node.waitReady();
    return node;
  };
  const cluster: TestCluster = {
    runId,
    databaseUrl: services.databaseUrl,
    topic,
    env,
    engines,
    ledgers,
    nodes,
    addNode,
    engineUrls: () => engines.filter((node) => node.alive).map((node) => node.url),
    liveEngineUrls: () => engines.filter((node) => node.alive && !node.paused).map((node) => node.url),
    output: () => nodes.map((node) => node.output().slice(-20_000)).join('\n'),
    saveOutput() {
      const folder = join(tmpdir(), 'hongbao-cluster-tests', runId);
      mkdirSync(folder, { recursive: true });
      for (const node of nodes) {
        for (const life of node.incarnations()) writeFileSync(join(folder, `${node.nodeId}-${life.pid}.log`), life.output);
      }
      return folder;
    },
    async stop() {
      await Promise.all(nodes.map((node) => node.kill('SIGKILL')));
      await services.drop();
    },
  };
  try {
    // Started together, waited for together: on a fresh database the first to take the
    // migrations lock migrates and the others find it done.
    const starting: Promise<NodeHandle>[] = [];
    for (let index = 1; index <= (options.engines ?? 3); index += 1) starting.push(addNode({ nodeId: `${runId}-node-${index}`, wait: false }));
    for (let index = 1; index <= (options.ledgers ?? 1); index += 1) starting.push(addNode({ nodeId: `${runId}-ledger-${index}`, role: 'ledger', wait: false }));
    const started = await Promise.all(starting);
    engines.push(...started.filter((node) => node.role !== 'ledger'));
    ledgers.push(...started.filter((node) => node.role === 'ledger'));
    await Promise.all(started.map((node) => node.waitReady()));
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

// ---------------------------------------------------------------- sending packets

export interface SentPacket {
  readonly id: string;
  readonly count: number;
  readonly totalFen: bigint;
  /** The node the send went to. */
  readonly via: string;
}

/** Funds a sender and sends `packets` group lucky packets, round robin over `urls`. */
export async function sendPackets(
  urls: readonly string[],
  { runId, packets, shares, amount }: { runId: string; packets: number; shares: number; amount: string },
): Promise<{ sender: string; depositedFen: bigint; packets: SentPacket[] }> {
  const sender = `${runId}-sender`;
  const depositedFen = fenOf(amount) * BigInt(packets);
  const deposit = await answered(urls, 0, (url) =>
    call(url, 'POST', '/v1/wallet/deposits', `${runId}-admin`, {
      admin: true,
      body: { userId: sender, amount: formatFen(depositedFen) },
      headers: { 'idempotency-key': `${runId}-deposit` },
    }),
  );
  if (deposit.status !== 201) throw new Error(`deposit: ${deposit.status} ${JSON.stringify(deposit.body)}`);
  const sent: SentPacket[] = [];
  for (let index = 0; index < packets; index += 1) {
    const reply = await answered(urls, index, (url) =>
      call(url, 'POST', '/v1/packets', sender, {
        body: { type: 'group_lucky', targetId: `${runId}-group`, count: shares, amount },
        headers: { 'idempotency-key': `${runId}-send-${index}` },
      }),
    );
    if (reply.status !== 201) throw new Error(`send ${index}: ${reply.status} ${JSON.stringify(reply.body)}`);
    sent.push({ id: reply.body.packet.id, count: shares, totalFen: fenOf(amount), via: urls[index % urls.length]! });
  }
  return { sender, depositedFen, packets: sent };
}

const formatFen = (amountFen: bigint) => `${amountFen / 100n}.${String(amountFen % 100n).padStart(2, '0')}`;

/** A request tried on the next node while it has no answer or answers 503 (a send is idempotent by its key). */
async function answered(urls: readonly string[], start: number, attempt: (url: string) => Promise<Reply>, timeoutMs = 60_000): Promise<Reply> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (let index = start; Date.now() < deadline; index += 1) {
    try {
      const reply = await attempt(urls[index % urls.length]!);
      if (reply.status !== 503 && reply.status !== 429) return reply;
      last = reply.body;
      await sleep(retryPauseMs(reply));
    } catch (error) {
      last = (error as Error).message;
      await sleep(100);
    }
  }
  throw new Error(`no answer within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
}

function retryPauseMs(reply: Reply): number {
  const fromBody = typeof reply.body?.retryAfterMs === 'number' ? reply.body.retryAfterMs : undefined;
  const header = reply.headers.get('retry-after');
  const fromHeader = header === null ? undefined : Number(header) * 1000;
  return Math.min(Math.max(fromBody ?? fromHeader ?? 100, 10), RETRY_PAUSE_MS_MAX);
}

// ---------------------------------------------------------------- the load

export interface AcknowledgedClaim {
  readonly packetId: string;
  readonly userId: string;
  readonly amountFen: bigint;
  readonly seq: number;
  /** The node the request was sent to (it may have passed it to the owner). */
  readonly via: string;
  /** When the request that got this answer was sent, and when the answer arrived (this machine's clock, as the nodes' logs). */
  readonly sentAtMs: number;
  readonly atMs: number;
}

export interface LoadReport {
  readonly acknowledged: readonly AcknowledgedClaim[];
  /** `already_claimed` answers: a claim whose first answer was lost (a timeout), stated again. */
  readonly restated: readonly AcknowledgedClaim[];
  /** Final answers per state (claimed, already_claimed, sold_out, …). */
  readonly answers: Record<string, number>;
  /** Answers per node URL (any status), and requests with no answer (refused, reset, timed out). */
  readonly byNode: Record<string, { answered: number; unanswered: number; claimed: number }>;
  /** busy / 503 / 429 answers that were retried. */
  readonly retried: number;
  /** Anything else: a 4xx/5xx that is not 503/429, or an open given up after its deadline. */
  readonly unexpected: readonly string[];
  readonly durationMs: number;
}

export interface LoadOptions {
  readonly runId: string;
  /** Where to send each open: asked again for every request, round robin over what it returns. */
  readonly urls: () => readonly string[];
  readonly packets: readonly SentPacket[];
  /** Users opening at once (each open is a new user). */
  readonly concurrency?: number;
  /** Opens started, at most. */
  readonly opensMax?: number;
  /** The load stops by itself after this. */
  readonly durationMs?: number;
  /** How long one user keeps retrying one open (busy, 503, no answer) before it is counted unexpected. */
  readonly openDeadlineMs?: number;
  /** New opens started per second, at most, over all users: the load lasts through a disruption. */
  readonly opensPerSecond?: number;
}

export interface Load {
  /** Acknowledged claims so far (grows while the load runs). */
  readonly acknowledged: readonly AcknowledgedClaim[];
  /** Resolves once at least `count` claims were acknowledged (rejects after timeoutMs). */
  waitForAcknowledged(count: number, timeoutMs?: number): Promise<void>;
  /** Stops starting opens, waits for those in progress, and reports. */
  stop(): Promise<LoadReport>;
  /** Resolves when the load stopped by itself (opensMax, durationMs, or every packet sold out). */
  readonly finished: Promise<LoadReport>;
}

const FINAL_STATES = new Set(['claimed', 'already_claimed', 'sold_out', 'expired', 'not_eligible']);

/** Opens one packet as one user until a final answer, retrying busy/503/429 and unanswered requests on the next node. */
export async function openUntilAnswered(
  urls: () => readonly string[],
  cursor: { next: number },
  packetId: string,
  userId: string,
  deadlineMs: number,
  onAttempt: (url: string, reply: Reply | undefined) => void = () => {},
): Promise<{ reply: Reply; via: string; sentAtMs: number } | { reply: undefined; last: string }> {
  let last = 'not tried';
  while (Date.now() < deadlineMs) {
    const live = urls();
    if (live.length === 0) {
      last = 'no node to send to';
      await sleep(100);
      continue;
    }
    const url = live[cursor.next++ % live.length]!;
    const sentAtMs = Date.now();
    let reply: Reply;
    try {
      reply = await call(url, 'POST', `/v1/packets/${packetId}/open`, userId);
    } catch (error) {
      onAttempt(url, undefined);
      last = `${url}: ${(error as Error).message}`;
      await sleep(50);
      continue;
    }
    onAttempt(url, reply);
    if (reply.status === 200 && FINAL_STATES.has(reply.body.state)) return { reply, via: url, sentAtMs };
    if (reply.status === 200 && reply.body.state === 'busy') {
      last = `${url}: busy`;
      await sleep(retryPauseMs(reply));
      continue;
    }
    if (reply.status === 503 || reply.status === 429) {
      last = `${url}: ${reply.status} ${JSON.stringify(reply.body)}`;
      await sleep(retryPauseMs(reply));
      continue;
    }
    return { reply, via: url, sentAtMs };
  }
  return { reply: undefined, last };
}

export function startLoad(options: LoadOptions): Load {
  const concurrency = options.concurrency ?? 32;
  const opensMax = options.opensMax ?? 5_000;
  const startedAtMs = Date.now();
  const stopAtMs = startedAtMs + (options.durationMs ?? 60_000);
  const openDeadlineMs = options.openDeadlineMs ?? 30_000;
  const acknowledged: AcknowledgedClaim[] = [];
  const restated: AcknowledgedClaim[] = [];
  const answers: Record<string, number> = {};
  const byNode: Record<string, { answered: number; unanswered: number; claimed: number }> = {};
  const unexpected: string[] = [];
  const soldOut = new Set<string>();
  const cursor = { next: 0 };
  const pacingMs = options.opensPerSecond === undefined ? 0 : 1000 / options.opensPerSecond;
  let nextStartMs = startedAtMs;
  let retried = 0;
  let started = 0;
  let stopping = false;
  const waiters: { count: number; resolve: () => void }[] = [];

  const tally = (url: string) => (byNode[url] ??= { answered: 0, unanswered: 0, claimed: 0 });
  const worker = async (workerIndex: number) => {
    for (let round = 0; !stopping && started < opensMax && Date.now() < stopAtMs; round += 1) {
      const open = options.packets.filter((packet) => !soldOut.has(packet.id));
      if (open.length === 0) return;
      const packet = open[(workerIndex + round) % open.length]!;
      const userId = `${options.runId}-w${workerIndex}-${round}`;
      if (pacingMs > 0) {
        const waitMs = nextStartMs - Date.now();
        nextStartMs = Math.max(nextStartMs, Date.now()) + pacingMs;
        if (waitMs > 0) await sleep(waitMs);
        if (stopping || Date.now() >= stopAtMs) return;
      }
      if (started >= opensMax) return;
      started += 1;
      const result = await openUntilAnswered(options.urls, cursor, packet.id, userId, Date.now() + openDeadlineMs, (url, reply) => {
        const node = tally(url);
        if (reply === undefined) node.unanswered += 1;
        else {
          node.answered += 1;
          if (reply.status === 503 || reply.status === 429 || reply.body?.state === 'busy') retried += 1;
        }
      });
      if (result.reply === undefined) {
        unexpected.push(`open ${packet.id} as ${userId}: no final answer within ${openDeadlineMs} ms (${result.last})`);
        continue;
      }
      const { reply, via } = result;
      if (reply.status !== 200) {
        unexpected.push(`open ${packet.id} as ${userId} via ${via}: ${reply.status} ${JSON.stringify(reply.body)}`);
        continue;
      }
      const state: string = reply.body.state;
      answers[state] = (answers[state] ?? 0) + 1;
      if (state === 'sold_out') soldOut.add(packet.id);
      if (state === 'claimed' || state === 'already_claimed') {
        const claim: AcknowledgedClaim = {
          packetId: packet.id,
          userId,
          amountFen: fenOf(reply.body.amount),
          seq: reply.body.seq,
          via,
          sentAtMs: result.sentAtMs,
          atMs: Date.now(),
        };
        if (state === 'claimed') {
          acknowledged.push(claim);
          tally(via).claimed += 1;
          for (const waiter of waiters.filter((each) => acknowledged.length >= each.count)) {
            waiters.splice(waiters.indexOf(waiter), 1);
            waiter.resolve();
          }
        } else restated.push(claim);
      }
    }
  };
  const report = (): LoadReport => ({ acknowledged, restated, answers, byNode, retried, unexpected, durationMs: Date.now() - startedAtMs });
  const running = Promise.all(Array.from({ length: concurrency }, (_, index) => worker(index))).then(report);
  return {
    acknowledged,
    finished: running,
    async waitForAcknowledged(count, timeoutMs = 60_000) {
      if (acknowledged.length >= count) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => waiters.push({ count, resolve })),
        running.then(() => {
          if (acknowledged.length < count) throw new Error(`the load ended with ${acknowledged.length} acknowledged claims, fewer than ${count}`);
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${acknowledged.length} claims acknowledged within ${timeoutMs} ms, fewer than ${count}`)), timeoutMs);
        }),
      ]).finally(() => clearTimeout(timer));
    },
    async stop() {
      stopping = true;
      return running;
    },
  };
}

// ---------------------------------------------------------------- the checker

export interface CheckInput {
  readonly databaseUrl: string;
  /** Engine nodes to drain through and to ask for reconciliation. */
  readonly urls: () => readonly string[];
  readonly runId: string;
  readonly packets: readonly SentPacket[];
  /** Every claim a client was told it got (`claimed`, and `already_claimed` restatements). */
  readonly acknowledged: readonly AcknowledgedClaim[];
  /** Σ of the deposits this test made (every wallet of the database is this test's). */
  readonly depositedFen: bigint;
  readonly timeoutMs?: number;
}

export interface CheckReport {
  /** Claims made while draining (after the load). */
  readonly drained: number;
  readonly claims: number;
  readonly problems: readonly string[];
}

/**
 * Drains every packet through the nodes, waits until the ledger has booked every claim, then
 * reads the real database. Returns every problem found (the test expects none).
 */
export async function checkCluster(input: CheckInput): Promise<CheckReport> {
  const timeoutMs = input.timeoutMs ?? 90_000;
  const deadlineMs = Date.now() + timeoutMs;
  const problems: string[] = [];
  const cursor = { next: 0 };
  const drainedClaims: AcknowledgedClaim[] = [];

  // 1. Drain: open each packet with new users until it is sold out.
  await Promise.all(
    input.packets.map(async (packet, packetIndex) => {
      for (let index = 0; index < packet.count + 1; index += 1) {
        const userId = `${input.runId}-d${packetIndex}-${index}`;
        const result = await openUntilAnswered(input.urls, cursor, packet.id, userId, deadlineMs);
        if (result.reply === undefined) {
          problems.push(`drain ${packet.id}: no answer (${result.last})`);
          return;
        }
        const { reply, via } = result;
        if (reply.status !== 200) {
          problems.push(`drain ${packet.id} as ${userId}: ${reply.status} ${JSON.stringify(reply.body)}`);
          return;
        }
        if (reply.body.state === 'sold_out') return;
        if (reply.body.state !== 'claimed' && reply.body.state !== 'already_claimed') {
          problems.push(`drain ${packet.id} as ${userId}: ${reply.body.state}`);
          return;
        }
        drainedClaims.push({ packetId: packet.id, userId, amountFen: fenOf(reply.body.amount), seq: reply.body.seq, via, sentAtMs: result.sentAtMs, atMs: Date.now() });
      }
      problems.push(`drain ${packet.id}: not sold out after ${packet.count + 1} new users`);
    }),
  );
  const told = [...input.acknowledged, ...drainedClaims];

  const client = new pg.Client({ connectionString: input.databaseUrl });
  await client.connect();
  try {
    // 2. The ledger books asynchronously: wait until every packet is finished in it.
    const ids = input.packets.map((packet) => packet.id);
    for (;;) {
      const { rows } = await client.query<{ unfinished: string }>(
        `select count(*)::text as unfinished from packets where id = any($1) and (status <> 'finished' or claimed_count <> count)`,
        [ids],
      );
      const { rows: present } = await client.query<{ n: string }>(`select count(*)::text as n from packets where id = any($1)`, [ids]);
      if (rows[0]!.unfinished === '0' && Number(present[0]!.n) === ids.length) break;
      if (Date.now() > deadlineMs) {
        problems.push(`the ledger did not finish ${rows[0]!.unfinished} packet(s) (of ${ids.length}, ${present[0]!.n} present) within ${timeoutMs} ms`);
        break;
      }
      await sleep(250);
    }

    // 3. Every claim a client was told of is in the ledger with its amount, credited to its user.
    const { rows: claimRows } = await client.query<{ packet_id: string; seq: number; user_id: string; amount_fen: string }>(
      `select packet_id, seq, user_id, amount_fen::text from claims where packet_id = any($1)`,
      [ids],
    );
    const { rows: transferRows } = await client.query<{ id: string; debit_account_id: string; credit_account_id: string; amount_fen: string }>(
      `select id, debit_account_id, credit_account_id, amount_fen::text from transfers where id like 'claim:%'`,
    );
    const claimAt = new Map(claimRows.map((row) => [`${row.packet_id}/${row.seq}`, row]));
    const transferOf = new Map(transferRows.map((row) => [row.id, row]));
    for (const claim of told) {
      const row = claimAt.get(`${claim.packetId}/${claim.seq}`);
      const what = `claim seq ${claim.seq} of ${claim.packetId} told to ${claim.userId} (${claim.amountFen} fen via ${claim.via})`;
      if (row === undefined) problems.push(`${what}: not in the ledger`);
      else if (row.user_id !== claim.userId || BigInt(row.amount_fen) !== claim.amountFen) problems.push(`${what}: the ledger has ${row.user_id} ${row.amount_fen} fen`);
      const transfer = transferOf.get(`claim:${claim.packetId}:${claim.seq}`);
      if (transfer === undefined) problems.push(`${what}: no transfer`);
      else if (transfer.credit_account_id !== `wallet:${claim.userId}` || transfer.debit_account_id !== `escrow:${claim.packetId}` || BigInt(transfer.amount_fen) !== claim.amountFen) {
        problems.push(`${what}: transfer ${JSON.stringify(transfer)}`);
      }
    }
    // A user told two different things about one packet.
    const toldTo = new Map<string, AcknowledgedClaim>();
    for (const claim of told) {
      const key = `${claim.packetId}/${claim.userId}`;
      const before = toldTo.get(key);
      if (before !== undefined && (before.seq !== claim.seq || before.amountFen !== claim.amountFen)) problems.push(`${key}: told seq ${before.seq} ${before.amountFen} and seq ${claim.seq} ${claim.amountFen}`);
      toldTo.set(key, claim);
    }

    // 4. Each packet drains to exactly its total, to distinct users, seq 1..count.
    for (const packet of input.packets) {
      const rows = claimRows.filter((row) => row.packet_id === packet.id);
      const sum = rows.reduce((total, row) => total + BigInt(row.amount_fen), 0n);
      const users = new Set(rows.map((row) => row.user_id));
      const seqs = rows.map((row) => row.seq).sort((a, b) => a - b);
      if (rows.length !== packet.count) problems.push(`${packet.id}: ${rows.length} claims, not ${packet.count}`);
      if (sum !== packet.totalFen) problems.push(`${packet.id}: claims sum to ${sum} fen, not ${packet.totalFen}`);
      if (users.size !== rows.length) problems.push(`${packet.id}: ${rows.length - users.size} user(s) claimed twice`);
      if (seqs.some((seq, index) => seq !== index + 1)) problems.push(`${packet.id}: seqs ${seqs.join(',')}`);
    }

    // 5. Every wallet of a user who only opened holds exactly what they claimed.
    const { rows: wallets } = await client.query<{ id: string; balance_fen: string }>(`select id, balance_fen::text from accounts where kind = 'wallet'`);
    const claimedBy = new Map<string, bigint>();
    for (const row of claimRows) claimedBy.set(row.user_id, (claimedBy.get(row.user_id) ?? 0n) + BigInt(row.amount_fen));
    for (const wallet of wallets) {
      const userId = wallet.id.slice('wallet:'.length);
      if (!claimedBy.has(userId)) continue;
      if (BigInt(wallet.balance_fen) !== claimedBy.get(userId)) problems.push(`${wallet.id}: balance ${wallet.balance_fen} fen, claimed ${claimedBy.get(userId)}`);
    }
    for (const userId of claimedBy.keys()) if (!wallets.some((wallet) => wallet.id === `wallet:${userId}`)) problems.push(`wallet:${userId}: missing`);

    // 6. Σ wallets + Σ live escrow = Σ deposits, and the books sum to zero, in bigint.
    const { rows: sums } = await client.query<{ kind: string; sum: string }>(`select kind, sum(balance_fen)::text as sum from accounts group by kind`);
    const of = (kind: string) => BigInt(sums.find((row) => row.kind === kind)?.sum ?? '0');
    const book = sums.reduce((total, row) => total + BigInt(row.sum), 0n);
    if (book !== 0n) problems.push(`the accounts sum to ${book} fen, not 0`);
    if (-of('external') !== input.depositedFen) problems.push(`deposits ${-of('external')} fen, the test deposited ${input.depositedFen}`);
    if (of('wallet') + of('escrow') !== input.depositedFen) problems.push(`wallets ${of('wallet')} + escrow ${of('escrow')} fen ≠ deposits ${input.depositedFen}`);
    const { rows: conflicts } = await client.query<{ n: string }>(`select count(*)::text as n from ledger_conflicts`);
    if (conflicts[0]!.n !== '0') problems.push(`${conflicts[0]!.n} ledger conflict(s) recorded`);
  } finally {
    await client.end();
  }

  // 7. Reconciliation, asked of an engine node, is clean.
  const reconcile = await answered(input.urls(), 0, (url) => call(url, 'POST', '/v1/admin/reconcile', `${input.runId}-auditor`, { admin: true, timeoutMs: 30_000 }));
  if (reconcile.status !== 200) problems.push(`reconcile: ${reconcile.status} ${JSON.stringify(reconcile.body)}`);
  else if (reconcile.body.discrepancies.length > 0) problems.push(`reconcile: ${JSON.stringify(reconcile.body.discrepancies).slice(0, 2_000)}`);
  return { drained: drainedClaims.length, claims: told.length, problems };
}

// ---------------------------------------------------------------- slot ownership, from the nodes' own logs

/** A packet's slot: the partition kafkajs' default partitioner picks for its id as the key (as the product does). */
export function slotOfPacket(packetId: string, partitions: number): number {
  const partitioner = Partitioners.DefaultPartitioner();
  const partitionMetadata = Array.from({ length: partitions }, (_, partitionId) => ({ partitionErrorCode: 0, partitionId, leader: 0, replicas: [0], isr: [0] }));
  return partitioner({ topic: 'slots', partitionMetadata, message: { key: packetId, value: null } });
}

/** One process of a node, by its URL and pid (a restart, or a second process with the same NODE_ID, is another). */
export interface ProcessRef {
  readonly node: NodeHandle;
  readonly incarnation: Incarnation;
  readonly label: string;
}

export interface OwnershipChange {
  readonly process: ProcessRef;
  readonly slot: number;
  readonly kind: 'taken' | 'lost';
  readonly atMs: number;
  /** For a loss: the node's reason (unassigned, fenced, append_failed), or `exited` when the process died. */
  readonly reason?: string;
}

export function processesOf(nodes: readonly NodeHandle[]): ProcessRef[] {
  return nodes.flatMap((node) => node.incarnations().map((incarnation) => ({ node, incarnation, label: `${node.nodeId} pid ${incarnation.pid} (${node.url})` })));
}

/**
 * What a process logged about its slots: `slot taken: N` once it fenced the earlier writer and
 * caught up, `slot lost: N (reason)` when it dropped the slot's actors (src/app/cluster.ts). A
 * process that exited lost whatever it held then.
 */
export function ownershipChanges(process: ProcessRef): OwnershipChange[] {
  const changes: OwnershipChange[] = [];
  const held = new Set<number>();
  for (const line of logLinesOf(process.incarnation.output)) {
    if (typeof line.slot !== 'number' || typeof line.msg !== 'string' || typeof line.time !== 'number') continue;
    if (line.msg.startsWith('slot taken:')) {
      changes.push({ process, slot: line.slot, kind: 'taken', atMs: line.time });
      held.add(line.slot);
    } else if (line.msg.startsWith('slot lost:')) {
      changes.push({ process, slot: line.slot, kind: 'lost', atMs: line.time, reason: String(line.reason) });
      held.delete(line.slot);
    }
  }
  const exit = process.incarnation.exit;
  if (exit !== undefined) for (const slot of held) changes.push({ process, slot, kind: 'lost', atMs: exit.atMs, reason: 'exited' });
  return changes;
}

/** The slots a process held at a moment, by its own log. */
export function slotsHeldAt(process: ProcessRef, atMs: number): number[] {
  const held = new Set<number>();
  for (const change of ownershipChanges(process)) {
    if (change.atMs > atMs) break;
    if (change.kind === 'taken') held.add(change.slot);
    else held.delete(change.slot);
  }
  return [...held].sort((left, right) => left - right);
}

export interface OwnershipReport {
  /** Claims a process decided itself: by its own log it held the packet's slot for the whole request. */
  readonly decidedBy: Map<ProcessRef, AcknowledgedClaim[]>;
  /** Claims answered by a node that did not hold the slot throughout (forwarded, or across a change): not attributed. */
  readonly unattributed: number;
  /**
   * Claims a process decided although another process had taken the slot after it (fenced the
   * broker's writer, logged `slot taken`) before the request was even sent: an acknowledged
   * open from a node that had lost the slot. Must be empty.
   */
  readonly problems: readonly string[];
}

/**
 * The single-writer check from the outside. For each `claimed` answer: which process answered
 * (the node the request went to, the process of it that ran then); if by that process's own log
 * it held the slot from before the request was sent until the answer came, it decided the claim
 * itself; and then no other process may have logged `slot taken` for that slot between this
 * process's own take and the request. A take is logged only after the new writer's fence, so a
 * claim decided after it would have been appended by a writer the broker refuses.
 */
export function checkOwnership(nodes: readonly NodeHandle[], claims: readonly AcknowledgedClaim[], partitions: number): OwnershipReport {
  const processes = processesOf(nodes);
  const changesOf = new Map(processes.map((process) => [process, ownershipChanges(process)]));
  const takes = [...changesOf.values()].flat().filter((change) => change.kind === 'taken');
  const decidedBy = new Map<ProcessRef, AcknowledgedClaim[]>();
  const problems: string[] = [];
  let unattributed = 0;
  for (const claim of claims) {
    const process = processes.find(
      (candidate) =>
        candidate.node.url === claim.via &&
        candidate.incarnation.startedAtMs <= claim.sentAtMs &&
        (candidate.incarnation.exit === undefined || candidate.incarnation.exit.atMs >= claim.atMs),
    );
    const slot = slotOfPacket(claim.packetId, partitions);
    const changes = process === undefined ? [] : changesOf.get(process)!.filter((change) => change.slot === slot);
    const before = changes.filter((change) => change.atMs <= claim.sentAtMs).at(-1);
    const during = changes.some((change) => change.atMs > claim.sentAtMs && change.atMs <= claim.atMs);
    if (process === undefined || before?.kind !== 'taken' || during) {
      unattributed += 1;
      continue;
    }
    const list = decidedBy.get(process) ?? [];
    list.push(claim);
    decidedBy.set(process, list);
    const newer = takes.find((take) => take.slot === slot && take.process !== process && take.atMs > before.atMs && take.atMs < claim.sentAtMs);
    if (newer !== undefined) {
      problems.push(
        `${process.label} answered claimed (seq ${claim.seq} of ${claim.packetId}, slot ${slot}, sent at ${claim.sentAtMs}) ` +
          `after ${newer.process.label} took slot ${slot} at ${newer.atMs}; its own take was at ${before.atMs}`,
      );
    }
  }
  return { decidedBy, unattributed, problems };
}
