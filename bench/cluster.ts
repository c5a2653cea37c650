// Shared by the cluster benchmarks (cluster-http.ts, failover.ts): a cluster of real server
// processes on the local services — a fresh database, a topic of its own, one ROLE=ledger
// process and N ROLE=engine nodes, each with its NODE_ID, port and ADVERTISE_URL — plus the
// cluster view, the packet → slot map, and CPU accounting per process from /proc.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel, Partitioners, type PartitionMetadata } from 'kafkajs';
import pg from 'pg';
import { Agent, request } from 'undici';
import { issueToken } from '../src/http/auth.js';
import { freePort } from '../test/support/process.js';
import { freshServerDatabase } from '../test/support/server-database.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export const BENCH_SECRET = 'bench-cluster-secret';
const NODE_READY_TIMEOUT_MS = 120_000;
/** Output kept per process (the tail), to say why a node did not start. */
const OUTPUT_CHARS_MAX = 20_000;
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- requests

/** One keep-alive pool for the bench's own requests (set-up, probes, the failover load). */
export const benchAgent = new Agent({ connections: 256, pipelining: 1, keepAliveTimeout: 4_000, headersTimeout: 5_000, bodyTimeout: 5_000, connect: { timeout: 2_000 } });

export interface Reply {
  readonly status: number;
  readonly body: any;
}

export async function call(url: string, method: 'GET' | 'POST', path: string, token: string, { body, headers = {}, timeoutMs = 5_000 }: { body?: unknown; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<Reply> {
  const answer = await request(`${url}${path}`, {
    method,
    dispatcher: benchAgent,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await answer.body.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: answer.statusCode, body: parsed };
}

/** Tokens for many users, minted before any clock starts. */
export async function mintTokens(prefix: string, count: number): Promise<string[]> {
  const tokens: string[] = [];
  for (let index = 0; index < count; index += 1) tokens.push(await issueToken(BENCH_SECRET, `${prefix}${index}`));
  return tokens;
}

// ---------------------------------------------------------------- processes

export type Role = 'engine' | 'ledger' | 'all';

/** A node's own word on its slots, from its log (LOG_LEVEL=info): when the group gave it slots, when it took one. */
export interface SlotEvent {
  readonly nodeId: string;
  readonly atMs: number;
  readonly kind: 'assignment' | 'taken' | 'lost';
  readonly slots: readonly number[];
}

export class NodeProcess {
  private child: ChildProcess | undefined;
  private tail = '';
  private partial = '';
  readonly slotEvents: SlotEvent[] = [];
  /** Answered /readyz 200 since it was last started (what a load balancer's health check would see). */
  ready = false;

  constructor(
    readonly nodeId: string,
    readonly role: Role,
    readonly port: number,
    private readonly env: Record<string, string>,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.alive ? this.child?.pid : undefined;
  }

  get alive(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  output(): string {
    return this.tail;
  }

  start(): void {
    if (this.alive) throw new Error(`${this.nodeId} runs already`);
    this.ready = false;
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: ROOT,
      env: { ...process.env, ...this.env, ROLE: this.role, NODE_ID: this.nodeId, HOST: '127.0.0.1', PORT: String(this.port), ADVERTISE_URL: this.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // BENCH_NODE_LOGS=<folder>: every process's whole output there too, for a failure's post-mortem.
    const logs = process.env.BENCH_NODE_LOGS;
    const keep = (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      this.tail = (this.tail + text).slice(-OUTPUT_CHARS_MAX);
      if (logs) appendFileSync(`${logs}/${this.nodeId}.log`, chunk);
      const lines = (this.partial + text).split('\n');
      this.partial = lines.pop() ?? '';
      for (const line of lines) this.noteSlotEvent(line);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    this.child = child;
  }

  private noteSlotEvent(line: string): void {
    if (!line.includes('"slot')) return;
    try {
      const entry = JSON.parse(line) as { time: number; msg: string; slot?: number; slots?: number[] };
      if (entry.msg === 'engine group assignment') this.slotEvents.push({ nodeId: this.nodeId, atMs: entry.time, kind: 'assignment', slots: entry.slots ?? [] });
      else if (entry.msg.startsWith('slot taken')) this.slotEvents.push({ nodeId: this.nodeId, atMs: entry.time, kind: 'taken', slots: [entry.slot!] });
      else if (entry.msg.startsWith('slot lost')) this.slotEvents.push({ nodeId: this.nodeId, atMs: entry.time, kind: 'lost', slots: [entry.slot!] });
    } catch {
      // not a log line of ours
    }
  }

  async waitReady(timeoutMs = NODE_READY_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.alive) throw new Error(`${this.nodeId} exited before it was ready:\n${this.tail.slice(-4000)}`);
      try {
        const answer = await request(`${this.url}/readyz`, { dispatcher: benchAgent, signal: AbortSignal.timeout(2_000) });
        await answer.body.dump();
        if (answer.statusCode === 200) {
          this.ready = true;
          return;
        }
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new Error(`${this.nodeId} not ready within ${timeoutMs} ms:\n${this.tail.slice(-4000)}`);
  }

  /** Resolves once the process has exited. */
  kill(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    this.ready = false;
    return new Promise((resolve) => {
      if (child === undefined || child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill(signal);
    });
  }
}

export interface ClusterView {
  readonly self: string;
  readonly nodes: readonly { id: string; url: string; role: string; owns: readonly number[] }[];
}

export interface Cluster {
  readonly topic: string;
  readonly partitions: number;
  readonly databaseUrl: string;
  readonly ledger: NodeProcess;
  readonly nodes: NodeProcess[];
  readonly adminToken: string;
  /** The slot (log partition) a packet's events go to: the producer's own key hash. */
  slotOf(packetId: string): number;
  view(through: NodeProcess): Promise<ClusterView>;
  /** Until every live node names exactly the live engine nodes, each owning slots, and all slots are owned once. */
  waitStable(timeoutMs?: number): Promise<ClusterView>;
  stop(): Promise<void>;
}

/**
 * The nodes all run ROLE=engine; one ROLE=ledger process books the log for all of them, so the
 * ledger's work is the same whatever the number of nodes.
 */
export async function startCluster({ nodes, partitions, label, env = {} }: { nodes: number; partitions: number; label: string; env?: Record<string, string> }): Promise<Cluster> {
  const server = await freshServerDatabase(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test');
  const topic = `hongbao-bench-${label}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6)}`;
  const brokers = process.env.KAFKA_BROKERS ?? '127.0.0.1:9092';
  const shared: Record<string, string> = {
    LOG_LEVEL: 'warn',
    AUTH_SECRET: BENCH_SECRET,
    SEED_SECRET: 'bench-cluster-seed',
    DATABASE_URL: server.url,
    KAFKA_BROKERS: brokers,
    KAFKA_TOPIC: topic,
    KAFKA_PARTITIONS: String(partitions),
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    // The bench's users open far faster than a person, and the set-up sends from one sender.
    OPEN_BURST: '1000000',
    OPENS_PER_SECOND: '1000000',
    REQUESTS_BURST: '1000000',
    REQUESTS_PER_SECOND: '1000000',
    REQUESTS_IN_FLIGHT_MAX: '100000',
    ...env,
  };
  const ledger = new NodeProcess(`${label}-ledger`, 'ledger', await freePort(), shared);
  const engines: NodeProcess[] = [];
  for (let index = 0; index < nodes; index += 1) engines.push(new NodeProcess(`${label}-n${index + 1}`, 'engine', await freePort(), shared));
  const partitioner = Partitioners.DefaultPartitioner();
  const table: PartitionMetadata[] = Array.from({ length: partitions }, (_, partitionId) => ({ partitionErrorCode: 0, partitionId, leader: 0, replicas: [0], isr: [0] }));
  const adminToken = await issueToken(BENCH_SECRET, 'bench-admin', { admin: true });

  const cluster: Cluster = {
    topic,
    partitions,
    databaseUrl: server.url,
    ledger,
    nodes: engines,
    adminToken,
    slotOf: (packetId) => partitioner({ topic, partitionMetadata: table, message: { key: packetId, value: null } }),
    async view(through) {
      const reply = await call(through.url, 'GET', '/v1/admin/cluster', adminToken, { timeoutMs: 3_000 });
      if (reply.status !== 200) throw new Error(`cluster view from ${through.nodeId}: ${reply.status} ${JSON.stringify(reply.body)}`);
      return reply.body as ClusterView;
    },
    async waitStable(timeoutMs = 120_000) {
      const deadline = Date.now() + timeoutMs;
      let last = 'no view yet';
      while (Date.now() < deadline) {
        const live = engines.filter((node) => node.alive);
        try {
          const views = await Promise.all(live.map((node) => cluster.view(node)));
          const shapes = views.map((view) =>
            JSON.stringify(
              view.nodes
                .filter((node) => node.role !== 'ledger')
                .map((node) => [node.id, [...node.owns]])
                .sort(),
            ),
          );
          const first = views[0]!.nodes.filter((node) => node.role !== 'ledger');
          const owned = first.flatMap((node) => node.owns).sort((left, right) => left - right);
          const ids = first.map((node) => node.id).sort();
          const expected = live.map((node) => node.nodeId).sort();
          if (
            shapes.every((shape) => shape === shapes[0]) &&
            JSON.stringify(ids) === JSON.stringify(expected) &&
            JSON.stringify(owned) === JSON.stringify(Array.from({ length: partitions }, (_, slot) => slot)) &&
            first.every((node) => node.owns.length > 0 || live.length > partitions)
          ) {
            return views[0]!;
          }
          last = shapes.join(' | ');
        } catch (error) {
          last = String(error);
        }
        await sleep(250);
      }
      throw new Error(`the cluster did not settle within ${timeoutMs} ms: ${last}`);
    },
    async stop() {
      await Promise.all([ledger, ...engines].map((node) => node.kill('SIGKILL')));
      await sleep(300);
      await server.drop().catch(() => {});
      await deleteTopic(brokers, topic).catch(() => {});
    },
  };

  try {
    // The ledger first: it creates the topic, and the nodes find it there.
    ledger.start();
    await ledger.waitReady();
    for (const node of engines) node.start();
    await Promise.all(engines.map((node) => node.waitReady()));
    await cluster.waitStable();
  } catch (error) {
    for (const node of [ledger, ...engines]) if (node.output()) process.stderr.write(`---- ${node.nodeId}\n${node.output().slice(-3000)}\n`);
    await cluster.stop();
    throw error;
  }
  return cluster;
}

export async function deleteTopic(brokers: string, topic: string): Promise<void> {
  const admin = new Kafka({ brokers: brokers.split(','), clientId: 'hongbao-bench', logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    await admin.deleteTopics({ topics: [topic], timeout: 10_000 });
  } finally {
    await admin.disconnect();
  }
}

/** Money for the sender, then `count` lucky packets of `shares` × 1.00 yuan, sent through the nodes in turn. */
export async function sendPackets(
  cluster: Cluster,
  { count, shares, concurrency = 16, idempotencyPrefix = 'packets' }: { count: number; shares: number; concurrency?: number; idempotencyPrefix?: string },
): Promise<string[]> {
  const sender = await issueToken(BENCH_SECRET, 'bench-sender');
  const through = cluster.nodes.filter((node) => node.alive);
  const deposit = await call(through[0]!.url, 'POST', '/v1/wallet/deposits', cluster.adminToken, {
    body: { userId: 'bench-sender', amount: `${count * shares}.00` },
    headers: { 'idempotency-key': `deposit-${idempotencyPrefix}` },
  });
  if (deposit.status !== 201) throw new Error(`deposit: ${deposit.status} ${JSON.stringify(deposit.body)}`);
  const packets: string[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let index = next++; index < count; index = next++) {
        const node = through[index % through.length]!;
        const reply = await call(node.url, 'POST', '/v1/packets', sender, {
          body: { type: 'group_lucky', targetId: 'g', count: shares, amount: `${shares}.00` },
          headers: { 'idempotency-key': `${idempotencyPrefix}-${index}` },
          timeoutMs: 30_000,
        });
        if (reply.status !== 201) throw new Error(`send ${index}: ${reply.status} ${JSON.stringify(reply.body)}`);
        packets[index] = reply.body.packet.id as string;
      }
    }),
  );
  return packets;
}

/**
 * Waits until the ledger has booked at least the `claims` the load generator heard acknowledged
 * and has stopped moving, and checks what it booked: never more than `inFlightMax` beyond them
 * (answers still in flight when a load run stopped are decided but not counted), no packet paying
 * more shares than it holds, no user twice in a packet.
 */
export async function verifyBooked(
  cluster: Cluster,
  { claims, sharesPerPacket, inFlightMax, timeoutMs = 120_000 }: { claims: number; sharesPerPacket: number; inFlightMax: number; timeoutMs?: number },
): Promise<{ booked: number; waitedMs: number }> {
  const client = new pg.Client({ connectionString: cluster.databaseUrl });
  await client.connect();
  const started = Date.now();
  try {
    const count = async () => (await client.query('select count(*)::int as count from claims')).rows[0].count as number;
    let booked = await count();
    while (Date.now() - started < timeoutMs) {
      await sleep(1_000);
      const now = await count();
      if (now >= claims && now === booked) break;
      booked = now;
    }
    if (booked < claims || booked > claims + inFlightMax) throw new Error(`the nodes acknowledged ${claims} claims (and at most ${inFlightMax} more were in flight), the ledger booked ${booked}`);
    const over = await client.query(
      'select packet_id, count(*)::int as claims, count(distinct user_id)::int as users from claims group by packet_id having count(*) > $1 or count(distinct user_id) <> count(*)',
      [sharesPerPacket],
    );
    if (over.rows.length > 0) throw new Error(`packets paid more shares than they hold, or a user twice: ${JSON.stringify(over.rows.slice(0, 5))}`);
    return { booked, waitedMs: Date.now() - started };
  } finally {
    await client.end();
  }
}

// ---------------------------------------------------------------- a node's own counters

/** The sums of a node's Prometheus counters and histograms that explain where an open's time goes. */
export async function nodeCounters(node: NodeProcess): Promise<Record<string, number>> {
  const answer = await request(`${node.url}/metrics`, { dispatcher: benchAgent, signal: AbortSignal.timeout(5_000) });
  const text = await answer.body.text();
  const wanted: Record<string, RegExp> = {
    openSeconds: /^hongbao_open_duration_seconds_sum(?:\{[^}]*\})? (\S+)$/,
    opens: /^hongbao_open_duration_seconds_count(?:\{[^}]*\})? (\S+)$/,
    appends: /^hongbao_log_appends_total(?:\{[^}]*\})? (\S+)$/,
    eventsAppended: /^hongbao_log_events_appended_total(?:\{[^}]*\})? (\S+)$/,
    forwardsOk: /^hongbao_forwards_total\{outcome="ok"\} (\S+)$/,
    forwardsFailed: /^hongbao_forwards_total\{outcome="(?:timeout|unreachable|overloaded|busy)"\} (\S+)$/,
    openHttpSeconds: /^hongbao_http_request_duration_seconds_sum\{[^}]*route="[^"]*open[^"]*"[^}]*\} (\S+)$/,
    openHttpRequests: /^hongbao_http_request_duration_seconds_count\{[^}]*route="[^"]*open[^"]*"[^}]*\} (\S+)$/,
  };
  const sums: Record<string, number> = Object.fromEntries(Object.keys(wanted).map((name) => [name, 0]));
  for (const line of text.split('\n')) {
    for (const [name, pattern] of Object.entries(wanted)) {
      const match = pattern.exec(line);
      if (match) sums[name]! += Number(match[1]);
    }
  }
  return sums;
}

/** What the nodes' counters moved by between two readings, summed over the nodes. */
export function countersMoved(before: readonly Record<string, number>[], after: readonly Record<string, number>[]): Record<string, number> {
  const moved: Record<string, number> = {};
  after.forEach((reading, index) => {
    for (const [name, value] of Object.entries(reading)) moved[name] = (moved[name] ?? 0) + value - (before[index]?.[name] ?? 0);
  });
  return moved;
}

// ---------------------------------------------------------------- CPU, from /proc

const TICKS_PER_SECOND = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

function processTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may hold spaces: fields count from after it.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime + stime (fields 14 and 15 of stat)
  } catch {
    return undefined;
  }
}

function machineTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = line.reduce((sum, value) => sum + value, 0);
  const idle = (line[3] ?? 0) + (line[4] ?? 0);
  return { busy: total - idle, total };
}

/**
 * The services' processes on this machine, found by name. Postgres: the server's own processes and
 * the backends of `databaseName` (other sessions' backends on this shared server are left to `other`).
 */
export function servicePids(databaseName: string | undefined): Record<'kafka' | 'postgres' | 'redis', number[]> {
  const found = { kafka: [] as number[], postgres: [] as number[], redis: [] as number[] };
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      if (comm === 'postgres') {
        // A backend's title: "postgres: 15/main: <user> <database> <host>(<port>) <state>".
        const title = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
        const backend = /: (\S+) (\S+) (\S+\(\d+\)|\[local\])/.exec(title);
        if (databaseName === undefined || backend === null || backend[2] === databaseName) found.postgres.push(Number(entry));
      } else if (comm === 'redis-server') found.redis.push(Number(entry));
      else if (comm === 'java' && readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes('kafka')) found.kafka.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

export interface CpuWindow {
  /** Percent of one core over the window, by process group; `machine` is all cores together (max cores × 100). */
  readonly percent: Record<string, number>;
  readonly seconds: number;
}

/**
 * Starts a CPU window over the named processes (plus this process, the services and the whole
 * machine); `end()` gives each one's share of a core over the window. `other` is the machine's
 * busy time not in any named group: other work on this shared machine.
 */
export function cpuWindow(named: Record<string, () => number | undefined>, databaseName?: string): { end(): CpuWindow } {
  const startedMs = performance.now();
  const startSelf = process.cpuUsage();
  const startMachine = machineTicks();
  const groups = (): Record<string, number[]> => {
    const services = servicePids(databaseName);
    const pids: Record<string, number[]> = { ...services };
    for (const [name, pid] of Object.entries(named)) {
      const value = pid();
      pids[name] = value === undefined ? [] : [value];
    }
    return pids;
  };
  const read = (pids: Record<string, number[]>) => {
    const ticks = new Map<number, number>();
    for (const list of Object.values(pids)) for (const pid of list) ticks.set(pid, processTicks(pid) ?? 0);
    return ticks;
  };
  const startPids = groups();
  const startTicks = read(startPids);
  return {
    end() {
      const seconds = (performance.now() - startedMs) / 1000;
      const endPids = groups();
      const endTicks = read(endPids);
      const percent: Record<string, number> = {};
      let listed = 0;
      for (const [name, pids] of Object.entries(endPids)) {
        let ticks = 0;
        for (const pid of pids) ticks += (endTicks.get(pid) ?? 0) - (startTicks.get(pid) ?? 0);
        percent[name] = (ticks / TICKS_PER_SECOND / seconds) * 100;
        listed += percent[name];
      }
      const self = process.cpuUsage(startSelf);
      percent['load generator'] = ((self.user + self.system) / 1e6 / seconds) * 100;
      listed += percent['load generator'];
      const endMachine = machineTicks();
      percent.machine = ((endMachine.busy - startMachine.busy) / TICKS_PER_SECOND / seconds) * 100;
      percent.other = Math.max(0, percent.machine - listed);
      return { percent, seconds };
    },
  };
}

/** The 1-minute load average now. */
export function loadAverage(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}
