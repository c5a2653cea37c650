// Notifications under load (issue 13): at a fixed offered rate of opens (5,000/s by default) on
// this machine, how many packet.opened events a webhook receives per second, and the latency from
// an acknowledged open to its webhook arriving at a local receiver.
//
// The real server (src/main.ts) in its own process, with WEBHOOK_ALLOW_PRIVATE=true; a receiver
// in another (bench/notifications-receiver.ts: node:http, records each delivery's arrival and
// checks its signature), registered through POST /v1/admin/webhooks for packet.opened only. A
// sender is funded and sends lucky packets of 100 shares through the API; then this process,
// the load generator, opens them OPEN LOOP: open i is due at start + i / rate, by user i (a new
// user every open), on packet i mod packets, on an undici Pool of `connections` sockets with at
// most that many in flight. An open that cannot start within `late-ms` of its due time (every
// socket busy, or the generator late) is not sent and counted as "not offered in time". Each
// acknowledged `claimed` is recorded (packet, seq, amount, the time its answer was read); after
// the load the scenario waits (at most `drain-s`) until every acknowledged claim's packet.opened
// has arrived, with its user, amount and a valid signature. A wrong signature, user or amount, or
// a type the webhook did not ask for, fails it at once; events still missing at the end of the
// wait fail it too, after it has printed its figures (`ok: false`; latencies that include a
// missing event are lower bounds, listed in `lowerBounds`). Duplicates (delivery is at least
// once) are counted, not failed. Times in both processes are performance.timeOrigin +
// performance.now(); their offset is measured over IPC before and after and reported.
//
// For context, the same open-loop load in the same run against a fresh server with no webhook
// registered (the baseline): the notifier still records the events for the live streams there,
// only the deliveries are missing; the ratios show what delivering them costs the open path.
//   node --import tsx bench/scenarios/notifications.ts [--services] [--quick] [--rate N] [--duration-s S]
//     [--connections N] [--late-ms MS] [--drain-s S] [--warmup-opens N]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { issueToken } from '../../src/http/auth.js';
import { freePort } from '../../test/support/process.js';
import { freshServerDatabase } from '../../test/support/server-database.js';
import { deleteTopic, loadAverage, sleep } from '../cluster.js';
import type { DeliveryRecord } from '../notifications-receiver.js';
import { argument, emit, fenOf, percentile, quick } from '../support.js';
import { inParallel, setupApi } from '../setup-api.js';

const SECRET = 'bench-secret';
const mode = process.argv.includes('--services') ? 'services' : 'embedded';
const RATE = argument('rate', quick ? 1_000 : 5_000);
const DURATION_S = argument('duration-s', quick ? 3 : 10);
const CONNECTIONS = argument('connections', 256);
const LATE_MS = argument('late-ms', 100);
const DRAIN_S = argument('drain-s', 60);
const WARMUP_OPENS = argument('warmup-opens', quick ? 500 : 3_000);
const WARMUP_RATE = Math.max(1, Math.round(RATE / 2));
/** An open unanswered this long counts as `no answer`. */
const OPEN_TIMEOUT_MS = 10_000;
const SHARES = 100;
const OPENS = Math.round(RATE * DURATION_S);
/** Round robin over enough packets that none runs out: every open that is answered can be a claim. */
const packetsFor = (opens: number) => Math.ceil((opens / SHARES) * 1.05) + 1;
const PACKETS = packetsFor(OPENS);
const WARMUP_PACKETS = packetsFor(WARMUP_OPENS);
const TICKS_PER_SECOND = 100; // USER_HZ (getconf CLK_TCK)
const BROKERS = process.env.KAFKA_BROKERS ?? '127.0.0.1:9092';
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

const nowMs = () => performance.timeOrigin + performance.now();
const log = (text: string) => process.stderr.write(text);

// ---------------------------------------------------------------- the API, for set-up and checks

const api = setupApi({ connections: 32, timeoutMs: 120_000 });

// ---------------------------------------------------------------- processes and their CPU (from /proc)

function ownTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
  } catch {
    return 0;
  }
}

function childrenOf(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((task) =>
      readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8')
        .split(' ')
        .filter((entry) => entry.length > 0)
        .map(Number),
    );
  } catch {
    return [];
  }
}

const treeTicks = (pid: number): number => ownTicks(pid) + childrenOf(pid).reduce((sum, child) => sum + treeTicks(child), 0);

function machineBusyTicks(): number {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return fields.reduce((sum, value) => sum + value, 0) - (fields[3] ?? 0) - (fields[4] ?? 0);
}

/** CPU over a window, in % of one core: the server (all threads, children), the receiver, this process, the machine. */
function cpuWindow(serverPid: number, receiverPid: number | undefined) {
  const start = { server: treeTicks(serverPid), receiver: receiverPid === undefined ? 0 : ownTicks(receiverPid), self: process.cpuUsage(), machine: machineBusyTicks(), at: performance.now() };
  return () => {
    const seconds = (performance.now() - start.at) / 1000;
    const percent = (ticks: number) => (ticks / TICKS_PER_SECOND / seconds) * 100;
    const self = process.cpuUsage(start.self);
    return {
      seconds,
      serverPercent: percent(treeTicks(serverPid) - start.server),
      receiverPercent: receiverPid === undefined ? 0 : percent(ownTicks(receiverPid) - start.receiver),
      loadGeneratorPercent: ((self.user + self.system) / 1e6 / seconds) * 100,
      machinePercent: percent(machineBusyTicks() - start.machine),
    };
  };
}
type Cpu = ReturnType<ReturnType<typeof cpuWindow>>;

interface Server {
  readonly url: string;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

async function startServer(env: Record<string, string>): Promise<Server> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: ROOT, env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1' }, stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGINT');
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(killer);
  };
  const url = `http://127.0.0.1:${port}`;
  for (let attempt = 0; attempt < 1_200; attempt += 1) {
    if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${url}/readyz`)).status === 200) return { url, child, stop };
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  child.kill('SIGKILL');
  throw new Error('the server did not start');
}

// ---------------------------------------------------------------- the receiver

interface ReceiverProcess {
  readonly url: string;
  readonly pid: number;
  secret(secret: string): void;
  take(): Promise<DeliveryRecord[]>;
  /** Receiver clock − this process's clock, from the IPC round trip with the smallest delay. */
  clockOffset(): Promise<{ offsetMs: number; roundTripMs: number }>;
  stats(): Promise<{ cpuMs: number; requests: number; badSignatures: number; unparsed: number }>;
  close(): void;
}

async function startReceiver(): Promise<ReceiverProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/notifications-receiver.ts'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting = new Map<string, (message: any) => void>();
  const next = (type: string) => new Promise<any>((resolve) => waiting.set(type, resolve));
  child.on('message', (message: any) => {
    const resolve = waiting.get(message.type);
    waiting.delete(message.type);
    resolve?.(message);
  });
  child.once('exit', (code) => {
    if (waiting.size > 0) log(`[notifications] the receiver exited with ${code}\n`);
  });
  let giveUp = () => {};
  const timer = setTimeout(() => giveUp(), 30_000);
  const listening = await Promise.race([next('listening'), new Promise<undefined>((resolve) => (giveUp = () => resolve(undefined)))]);
  clearTimeout(timer);
  if (listening === undefined) {
    child.kill('SIGKILL');
    throw new Error('the receiver did not start');
  }
  let taken = 0;
  return {
    url: `http://127.0.0.1:${listening.port}/hooks`,
    pid: child.pid!,
    secret: (secret) => child.send({ type: 'secret', secret }),
    async take() {
      const answer = next('records');
      child.send({ type: 'take', from: taken });
      const { records } = (await answer) as { records: DeliveryRecord[] };
      taken += records.length;
      return records;
    },
    async clockOffset() {
      let best = { offsetMs: Number.NaN, roundTripMs: Number.POSITIVE_INFINITY };
      for (let id = 0; id < 20; id += 1) {
        const answer = next('pong');
        const sentMs = nowMs();
        child.send({ type: 'ping', id });
        const pong = await answer;
        const backMs = nowMs();
        if (backMs - sentMs < best.roundTripMs) best = { offsetMs: pong.nowMs - (sentMs + backMs) / 2, roundTripMs: backMs - sentMs };
      }
      return best;
    },
    async stats() {
      const answer = next('stats');
      child.send({ type: 'stats' });
      const { type: _type, ...stats } = await answer;
      return stats;
    },
    close: () => child.kill('SIGKILL'),
  };
}

// ---------------------------------------------------------------- the open-loop load generator

interface Work {
  readonly packet: number;
  readonly path: string;
  readonly headers: Record<string, string>;
}

interface LoadRun {
  readonly rate: number;
  readonly startMs: number;
  readonly opens: number;
  /** Per open: when it was sent and its answer read (NaN: not sent / no answer), its seq and amount (−1: not claimed). */
  readonly sentMs: Float64Array;
  readonly ackMs: Float64Array;
  readonly seq: Int32Array;
  readonly amountFen: Int32Array;
  readonly states: Record<string, number>;
  readonly notOfferedInTime: number;
  /** Most sockets busy at once. */
  readonly inFlightMax: number;
  readonly lastAnswerMs: number;
  readonly problems: string[];
}

/**
 * Sends `work[i]` at start + i / rate unless it cannot start within LATE_MS of that (then it is
 * not sent); never more than `connections` in flight, so the pool never queues behind the clock.
 */
async function openLoop(url: string, work: readonly Work[], rate: number): Promise<LoadRun> {
  const pool = new Pool(url, { connections: CONNECTIONS, pipelining: 1, keepAliveTimeout: 60_000, headersTimeout: OPEN_TIMEOUT_MS, bodyTimeout: OPEN_TIMEOUT_MS });
  // Every socket open before the clock starts.
  await Promise.all(Array.from({ length: CONNECTIONS }, () => pool.request({ path: '/healthz', method: 'GET' }).then((answer) => answer.body.dump())));
  const opens = work.length;
  const sentMs = new Float64Array(opens).fill(Number.NaN);
  const ackMs = new Float64Array(opens).fill(Number.NaN);
  const seq = new Int32Array(opens).fill(-1);
  const amountFen = new Int32Array(opens).fill(-1);
  const states: Record<string, number> = {};
  const problems: string[] = [];
  const count = (state: string) => (states[state] = (states[state] ?? 0) + 1);
  let next = 0;
  let inFlight = 0;
  let inFlightMax = 0;
  let notOfferedInTime = 0;
  let lastAnswerMs = 0;
  const startMs = nowMs() + 5;
  const interval = 1000 / rate;
  await new Promise<void>((resolve) => {
    const fire = (index: number, at: number) => {
      sentMs[index] = at;
      inFlight += 1;
      if (inFlight > inFlightMax) inFlightMax = inFlight;
      const line = work[index]!;
      pool
        .request({ path: line.path, method: 'POST', headers: line.headers })
        .then(async (answer) => {
          const text = await answer.body.text();
          const at = nowMs();
          ackMs[index] = at;
          lastAnswerMs = at;
          let body: { state?: string; seq?: unknown; amount?: unknown } = {};
          try {
            body = JSON.parse(text);
          } catch {
            // named by its status
          }
          const state = answer.statusCode === 200 && typeof body.state === 'string' ? body.state : `http ${answer.statusCode}`;
          count(state);
          if (state === 'claimed') {
            seq[index] = typeof body.seq === 'number' ? body.seq : -1;
            amountFen[index] = fenOf(body.amount);
            if (seq[index]! < 1 || !(amountFen[index]! >= 1)) problems.length < 5 && problems.push(`${line.path}: claimed ${text}`);
          } else if (state !== 'busy' && answer.statusCode !== 429 && answer.statusCode !== 503) {
            problems.length < 5 && problems.push(`${line.path}: ${answer.statusCode} ${text.slice(0, 200)}`);
          }
        })
        .catch(() => count('no answer'))
        .finally(() => {
          inFlight -= 1;
          pump();
        });
    };
    const pump = () => {
      const at = nowMs();
      while (next < opens) {
        const due = startMs + next * interval;
        if (due > at) break;
        if (at - due > LATE_MS) {
          notOfferedInTime += 1;
          next += 1;
          continue;
        }
        if (inFlight >= CONNECTIONS) break;
        fire(next, at);
        next += 1;
      }
      if (next >= opens && inFlight === 0) {
        clearInterval(timer);
        resolve();
      }
    };
    const timer = setInterval(pump, 1);
  });
  await pool.close();
  return { rate, startMs, opens, sentMs, ackMs, seq, amountFen, states, notOfferedInTime, inFlightMax, lastAnswerMs, problems };
}

const sortedOf = (values: Iterable<number>) => Float64Array.from(values).sort();
const quantiles = (sorted: Float64Array) => {
  const at = (fraction: number) => percentile(sorted as unknown as number[], fraction);
  return { p50Ms: at(0.5), p90Ms: at(0.9), p99Ms: at(0.99), p999Ms: at(0.999), maxMs: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1]!, minMs: sorted.length === 0 ? Number.NaN : sorted[0]! };
};
const round = (value: number, digits = 2) => (Number.isFinite(value) ? Math.round(value * 10 ** digits) / 10 ** digits : value);
const rounded = <T extends Record<string, number>>(entries: T, digits = 2) => Object.fromEntries(Object.entries(entries).map(([key, value]) => [key, round(value, digits)])) as T;

/**
 * Percentiles of latencies of which some are only known to be at least a bound (an event still on
 * its way when the wait ended): a percentile is exact if it falls below every such bound, else it
 * is a lower bound, listed in `lowerBounds`.
 */
function censoredQuantiles(known: readonly number[], atLeast: readonly number[]) {
  const all = sortedOf([...known, ...atLeast]);
  let smallestBound = Number.POSITIVE_INFINITY;
  for (const bound of atLeast) smallestBound = Math.min(smallestBound, bound);
  const figures = rounded(quantiles(all));
  const lowerBounds = Object.entries(figures)
    .filter(([name, value]) => name !== 'minMs' && value >= smallestBound)
    .map(([name]) => name);
  return { ...figures, lowerBounds };
}

/** What the load generator saw: offered, achieved, acknowledged, latency of the opens. */
function loadFigures(load: LoadRun, cpu: Cpu) {
  let sent = 0;
  let answered = 0;
  let claims = 0;
  const service: number[] = [];
  const fromDue: number[] = [];
  const startLag: number[] = [];
  for (let index = 0; index < load.opens; index += 1) {
    if (Number.isNaN(load.sentMs[index]!)) continue;
    sent += 1;
    const due = load.startMs + (index * 1000) / load.rate;
    startLag.push(load.sentMs[index]! - due);
    if (Number.isNaN(load.ackMs[index]!)) continue;
    answered += 1;
    if (load.seq[index]! >= 1) claims += 1;
    service.push(load.ackMs[index]! - load.sentMs[index]!);
    fromDue.push(load.ackMs[index]! - due);
  }
  const scheduledS = load.opens / load.rate;
  const windowS = (load.lastAnswerMs - load.startMs) / 1000;
  return {
    offeredPerSecond: load.rate,
    scheduledS,
    opensScheduled: load.opens,
    opensSent: sent,
    notOfferedInTime: load.notOfferedInTime,
    sentPerSecond: sent / scheduledS,
    answered,
    claims,
    windowS,
    answeredPerSecond: answered / windowS,
    claimsPerSecond: claims / windowS,
    states: load.states,
    inFlightMax: load.inFlightMax,
    /** Sent → answer read. */
    openLatency: rounded(quantiles(sortedOf(service))),
    /** Due → answer read: includes any wait for a free socket (open-loop latency, no coordinated omission). */
    openLatencyFromDue: rounded(quantiles(sortedOf(fromDue))),
    startLagMs: rounded(quantiles(sortedOf(startLag))),
    cpu: rounded(cpu, 1),
  };
}

// ---------------------------------------------------------------- deliveries

const KEY_SEQS = 1 << 8; // seq ≤ SHARES < 256

class Deliveries {
  /** key (packet · 256 + seq) → first arrival. */
  readonly firstArrival = new Map<number, number>();
  readonly arrivals = new Map<number, number>();
  duplicates = 0;
  badSignatures = 0;
  otherTypes = 0;
  unknownPackets = 0;
  mismatches: string[] = [];
  mismatchCount = 0;
  /** Deliveries, by packet, in arrival order: their seqs (for the order check). */
  readonly orderByPacket = new Map<number, number[]>();

  constructor(
    private readonly packetIndex: ReadonlyMap<string, number>,
    private readonly expected: ReadonlyMap<number, { userId: string; amountFen: number }>,
  ) {}

  absorb(records: readonly DeliveryRecord[]): void {
    for (const [, type, packetId, seq, userId, amount, arrivalMs, signatureOk] of records) {
      if (signatureOk !== 1) this.badSignatures += 1;
      if (type !== 'packet.opened') {
        this.otherTypes += 1;
        continue;
      }
      const packet = this.packetIndex.get(packetId);
      if (packet === undefined) {
        this.unknownPackets += 1;
        continue;
      }
      const key = packet * KEY_SEQS + seq;
      const seen = this.arrivals.get(key) ?? 0;
      this.arrivals.set(key, seen + 1);
      if (seen > 0) {
        this.duplicates += 1;
        continue;
      }
      this.firstArrival.set(key, arrivalMs);
      const order = this.orderByPacket.get(packet);
      if (order === undefined) this.orderByPacket.set(packet, [seq]);
      else order.push(seq);
      const want = this.expected.get(key);
      if (want !== undefined && (want.userId !== userId || want.amountFen !== fenOf(amount))) {
        this.mismatchCount += 1;
        if (this.mismatches.length < 5) this.mismatches.push(`${packetId} seq ${seq}: delivered ${userId} ${amount}, the open was answered to ${want.userId} ${want.amountFen} fen`);
      }
    }
  }

  missing(): number[] {
    return [...this.expected.keys()].filter((key) => !this.firstArrival.has(key));
  }

  /** Packets whose events arrived out of seq order (first deliveries only). */
  outOfOrder(packets: Iterable<number>): number {
    let count = 0;
    for (const packet of packets) {
      const order = this.orderByPacket.get(packet) ?? [];
      if (order.some((seq, index) => index > 0 && seq < order[index - 1]!)) count += 1;
    }
    return count;
  }
}

/** Polls the receiver until none of `deliveries`' expected events is missing, or the bound passes. */
async function drain(receiver: ReceiverProcess, deliveries: Deliveries, boundS: number): Promise<{ missing: number[]; waitedS: number }> {
  const started = performance.now();
  let missing = deliveries.missing();
  for (;;) {
    deliveries.absorb(await receiver.take());
    missing = missing.filter((key) => !deliveries.firstArrival.has(key));
    if (missing.length === 0 || performance.now() - started > boundS * 1000) break;
    await sleep(200);
  }
  // Anything still on its way after the last wanted one (duplicates): a last look.
  await sleep(300);
  deliveries.absorb(await receiver.take());
  return { missing, waitedS: (performance.now() - started) / 1000 };
}

// ---------------------------------------------------------------- one server: set-up, warm-up, the measured load

interface Tokens {
  readonly users: string[];
  readonly warmup: string[];
}

async function serverRun(kind: 'baseline' | 'notifications', tokens: Tokens) {
  const dataDir = mkdtempSync(join(tmpdir(), 'hongbao-bench-notifications-'));
  const database = mode === 'services' ? await freshServerDatabase(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test') : undefined;
  const topic = `hongbao-bench-notifications-${Date.now().toString(36)}`;
  const services: Record<string, string> = database ? { DATABASE_URL: database.url, KAFKA_BROKERS: BROKERS, KAFKA_TOPIC: topic, REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' } : {};
  const receiver = kind === 'notifications' ? await startReceiver() : undefined;
  const server = await startServer({ DATA_DIR: dataDir, AUTH_SECRET: SECRET, LOG_LEVEL: 'error', REQUESTS_BURST: '1000000', WEBHOOK_ALLOW_PRIVATE: 'true', ...services });
  try {
    const admin = await issueToken(SECRET, 'bench-admin', { admin: true });
    const sender = await issueToken(SECRET, 'bench-sender');
    let secret: string | undefined;
    if (receiver) {
      // Before the sends: their packet.sent events are not for this webhook anyway.
      const created = await api(server.url, 'POST', '/v1/admin/webhooks', admin, { url: receiver.url, events: ['packet.opened'] });
      if (created.status !== 201 || typeof created.body.secret !== 'string') throw new Error(`registering the webhook: ${created.status} ${JSON.stringify(created.body)}`);
      secret = created.body.secret;
      receiver.secret(secret!);
    }
    const packetCount = WARMUP_PACKETS + PACKETS;
    const deposit = await api(server.url, 'POST', '/v1/wallet/deposits', admin, { userId: 'bench-sender', amount: `${packetCount * SHARES}.00` }, { 'idempotency-key': 'bench' });
    if (deposit.status !== 201) throw new Error(`deposit: ${deposit.status} ${JSON.stringify(deposit.body)}`);
    const packets: string[] = new Array(packetCount);
    await inParallel(packets, 16, async (_, index) => {
      const sent = await api(server.url, 'POST', '/v1/packets', sender, { type: 'group_lucky', targetId: 'g', count: SHARES, amount: `${SHARES}.00` }, { 'idempotency-key': `p${index}` });
      if (sent.status !== 201) throw new Error(`send ${index}: ${sent.status} ${JSON.stringify(sent.body)}`);
      packets[index] = sent.body.packet.id;
    });
    const packetIndex = new Map(packets.map((id, index) => [id, index]));
    // Warm-up packets first, opened by users w0…; the measured ones by u0….
    const work = (count: number, first: number, packetsOf: number, users: string[]): Work[] =>
      Array.from({ length: count }, (_, index) => {
        const packet = first + (index % packetsOf);
        return { packet, path: `/v1/packets/${packets[packet]}/open`, headers: { authorization: `Bearer ${users[index]}` } };
      });
    const expectedOf = (load: LoadRun, lines: readonly Work[], prefix: string) => {
      const expected = new Map<number, { userId: string; amountFen: number }>();
      for (let index = 0; index < load.opens; index += 1) if (load.seq[index]! >= 1) expected.set(lines[index]!.packet * KEY_SEQS + load.seq[index]!, { userId: `${prefix}${index}`, amountFen: load.amountFen[index]! });
      return expected;
    };

    const warmLines = work(WARMUP_OPENS, 0, WARMUP_PACKETS, tokens.warmup);
    const warm = await openLoop(server.url, warmLines, WARMUP_RATE);
    let warmupDrainS = Number.NaN;
    if (receiver) {
      // The measured load starts with nothing left to deliver.
      const warmDeliveries = new Deliveries(packetIndex, expectedOf(warm, warmLines, 'w'));
      const drained = await drain(receiver, warmDeliveries, DRAIN_S);
      if (drained.missing.length > 0) throw new Error(`warm-up: ${drained.missing.length} of ${warmDeliveries.firstArrival.size + drained.missing.length} packet.opened never arrived within ${DRAIN_S} s`);
      warmupDrainS = drained.waitedS;
    } else {
      await sleep(1_000);
    }
    const clockBefore = await receiver?.clockOffset();

    const lines = work(OPENS, WARMUP_PACKETS, PACKETS, tokens.users);
    const loadAverageBefore = loadAverage();
    const endWindow = cpuWindow(server.child.pid!, receiver?.pid);
    const load = await openLoop(server.url, lines, RATE);
    const cpu = endWindow();
    const figures = loadFigures(load, cpu);
    if (load.problems.length > 0) throw new Error(`${kind}: answers that are neither claimed nor busy: ${load.problems.join('; ')}`);
    // Every claim the generator heard is one share of its packet: seqs distinct per packet.
    const seen = new Set<number>();
    for (let index = 0; index < load.opens; index += 1) {
      if (load.seq[index]! < 1) continue;
      const key = lines[index]!.packet * KEY_SEQS + load.seq[index]!;
      if (seen.has(key)) throw new Error(`${kind}: seq ${load.seq[index]} of ${packets[lines[index]!.packet]} answered twice`);
      seen.add(key);
    }
    const result: Record<string, unknown> = { ...figures, loadAverageBefore, warmup: { opens: WARMUP_OPENS, rate: WARMUP_RATE, claims: warm.seq.filter((seq) => seq >= 1).length } };
    if (!receiver) return result;

    // ---------------------------------------------------------------- wait for every acknowledged claim's webhook
    const expected = expectedOf(load, lines, 'u');
    const deliveries = new Deliveries(packetIndex, expected);
    const endDrainWindow = cpuWindow(server.child.pid!, receiver.pid);
    const drained = await drain(receiver, deliveries, DRAIN_S);
    const drainCpu = endDrainWindow();
    const drainEndMs = nowMs();
    const clockAfter = await receiver.clockOffset();
    const receiverStats = await receiver.stats();
    // Wrong content is a failure at once; lateness is measured (below) and fails the scenario at its end.
    if (deliveries.badSignatures > 0) throw new Error(`${deliveries.badSignatures} deliveries whose signature is not the webhook secret's`);
    if (deliveries.mismatchCount > 0) throw new Error(`${deliveries.mismatchCount} deliveries that say another user or amount than the open's answer: ${deliveries.mismatches.join('; ')}`);
    if (deliveries.otherTypes > 0) throw new Error(`${deliveries.otherTypes} deliveries of types the webhook did not ask for`);

    // Latency: ack → first arrival, for every acknowledged claim; one still missing counts as at least (end of the wait − ack).
    const arrived: number[] = [];
    const stillMissing: number[] = [];
    const measuredPackets = new Set<number>();
    let arrivedBeforeAck = 0;
    const loadEndMs = load.lastAnswerMs;
    let deliveredDuringLoad = 0;
    let firstArrivalMs = Number.POSITIVE_INFINITY;
    let lastArrivalMs = 0;
    const secondOf = (ms: number) => Math.max(0, Math.floor((ms - load.startMs) / 1000));
    const timeline: { second: number; sent: number; acknowledged: number; delivered: number }[] = [];
    const bucket = (second: number) => {
      while (timeline.length <= second) timeline.push({ second: timeline.length, sent: 0, acknowledged: 0, delivered: 0 });
      return timeline[second]!;
    };
    for (let index = 0; index < load.opens; index += 1) {
      if (!Number.isNaN(load.sentMs[index]!)) bucket(secondOf(load.sentMs[index]!)).sent += 1;
      if (load.seq[index]! < 1) continue;
      const key = lines[index]!.packet * KEY_SEQS + load.seq[index]!;
      measuredPackets.add(lines[index]!.packet);
      bucket(secondOf(load.ackMs[index]!)).acknowledged += 1;
      const arrival = deliveries.firstArrival.get(key);
      if (arrival === undefined) {
        stillMissing.push(drainEndMs - load.ackMs[index]!);
        continue;
      }
      const latency = arrival - load.ackMs[index]!;
      if (latency < 0) arrivedBeforeAck += 1;
      arrived.push(latency);
      bucket(secondOf(arrival)).delivered += 1;
      if (arrival <= loadEndMs) deliveredDuringLoad += 1;
      firstArrivalMs = Math.min(firstArrivalMs, arrival);
      lastArrivalMs = Math.max(lastArrivalMs, arrival);
    }
    // Every packet.opened of a measured packet, acknowledged or not (an open whose answer was lost is still a claim).
    const deliveredWithoutAck = [...deliveries.firstArrival.keys()].filter((key) => measuredPackets.has(Math.floor(key / KEY_SEQS)) && !expected.has(key)).length;
    const half = (loadEndMs - load.startMs) / 2;
    const secondHalf = [...deliveries.firstArrival.entries()].filter(([key, at]) => expected.has(key) && at > load.startMs + half && at <= loadEndMs).length;
    const verified = stillMissing.length === 0;
    return {
      ...result,
      verified,
      ...(verified ? {} : { failure: `${stillMissing.length} of ${expected.size} acknowledged claims' packet.opened had not arrived ${DRAIN_S} s after the load` }),
      deliveries: {
        expected: expected.size,
        delivered: arrived.length,
        missing: stillMissing.length,
        duplicates: deliveries.duplicates,
        deliveredWithoutAck,
        outOfOrderPackets: deliveries.outOfOrder(measuredPackets),
        badSignatures: deliveries.badSignatures,
        /** First arrivals within the load window (first send → last answer) ÷ that window. */
        duringLoadPerSecond: deliveredDuringLoad / figures.windowS,
        /** The same over the second half of the load window only (past any ramp-up). */
        secondHalfOfLoadPerSecond: secondHalf / (half / 1000),
        /** Every arrival ÷ (last arrival − first arrival). */
        overallPerSecond: arrived.length / ((lastArrivalMs - firstArrivalMs) / 1000),
        deliveredDuringLoad,
        backlogAtLoadEnd: expected.size - deliveredDuringLoad,
        lastArrivalAfterLoadS: (lastArrivalMs - loadEndMs) / 1000,
        firstArrivalAfterStartS: (firstArrivalMs - load.startMs) / 1000,
        latency: censoredQuantiles(arrived, stillMissing),
        arrivedBeforeAck,
        timeline,
        drainCpu: rounded(drainCpu, 1),
        drainWaitedS: drained.waitedS,
        warmupDrainS,
      },
      clock: { before: clockBefore && rounded(clockBefore, 3), after: rounded(clockAfter, 3) },
      receiver: receiverStats,
    };
  } finally {
    await server.stop();
    receiver?.close();
    rmSync(dataDir, { recursive: true, force: true });
    await database?.drop().catch(() => {});
    if (database) await deleteTopic(BROKERS, topic).catch(() => {});
  }
}

// ---------------------------------------------------------------- the scenario

const started = performance.now();
const loadAverageAtStart = loadAverage();
log(`[notifications] ${mode}: ${OPENS} opens at ${RATE}/s over ${PACKETS} packets (load ${loadAverageAtStart.toFixed(2)}); minting tokens …`);
const tokens: Tokens = {
  users: await Promise.all(Array.from({ length: OPENS }, (_, index) => issueToken(SECRET, `u${index}`))),
  warmup: await Promise.all(Array.from({ length: WARMUP_OPENS }, (_, index) => issueToken(SECRET, `w${index}`))),
};
try {
  log(' baseline (no webhook) …');
  const baseline = (await serverRun('baseline', tokens)) as ReturnType<typeof loadFigures>;
  log(` ${Math.round(baseline.claimsPerSecond)} claims/s, p99 ${baseline.openLatency.p99Ms} ms; with the webhook …`);
  const notifications = (await serverRun('notifications', tokens)) as ReturnType<typeof loadFigures> & { verified: boolean; failure?: string; deliveries: any };
  const latency = notifications.deliveries.latency;
  const bound = (name: string) => (latency.lowerBounds.includes(name) ? '≥ ' : '');
  log(
    ` ${Math.round(notifications.claimsPerSecond)} claims/s, ${Math.round(notifications.deliveries.duringLoadPerSecond)} deliveries/s during the load,` +
      ` ack → webhook p50 ${bound('p50Ms')}${latency.p50Ms} ms p99 ${bound('p99Ms')}${latency.p99Ms} ms${notifications.verified ? '' : `; FAILED: ${notifications.failure}`} (${((performance.now() - started) / 1000).toFixed(0)} s)\n`,
  );
  emit({
    scenario: 'notifications',
    mode,
    quick,
    ok: notifications.verified,
    ...(notifications.verified ? {} : { error: notifications.failure }),
    rate: RATE,
    durationS: DURATION_S,
    connections: CONNECTIONS,
    lateMs: LATE_MS,
    drainBoundS: DRAIN_S,
    openTimeoutMs: OPEN_TIMEOUT_MS,
    packets: PACKETS,
    sharesPerPacket: SHARES,
    warmupOpens: WARMUP_OPENS,
    warmupRate: WARMUP_RATE,
    loadAverageAtStart,
    loadAverageAtEnd: loadAverage(),
    elapsedS: round((performance.now() - started) / 1000, 1),
    baseline,
    notifications,
    ratios: {
      claimsPerSecond: notifications.claimsPerSecond / baseline.claimsPerSecond,
      openP50: notifications.openLatency.p50Ms / baseline.openLatency.p50Ms,
      openP99: notifications.openLatency.p99Ms / baseline.openLatency.p99Ms,
      serverCpu: notifications.cpu.serverPercent / baseline.cpu.serverPercent,
    },
  });
  // Not every acknowledged claim's webhook arrived in time: the figures are printed, the scenario fails.
  if (!notifications.verified) process.exitCode = 1;
} finally {
  await api.close();
}
