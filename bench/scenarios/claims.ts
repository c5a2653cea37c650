// End to end, a new user per open (issue 11): lucky packets sent through the API, then a load
// generator in its own process (bench/loadgen.ts: autocannon, 256 connections, pipelining 1)
// opens them, each (packet, user) pair once, round robin over the packets, until every share is
// claimed. The same client, settings and number of requests against bare node:http answering a
// fixed body (bench/ceiling-server.ts), in the same run, alternately. Every hongbao run is
// verified (every claim on its packet's result page and in its user's wallet, totals exact,
// reconcile clean) or the scenario fails. Server CPU over exactly the load window from /proc (the
// process, its threads, its children), and in services mode the CPU of Postgres, Kafka and Redis.
// With --profile, one more hongbao pass under --cpu-prof after the measured ones: shares only.
//   node --import tsx bench/scenarios/claims.ts [--services] [--quick] [--profile [--profile-dir D]] [--packets N] [--users N] [--runs N]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { issueToken } from '../../src/http/auth.js';
import { freePort } from '../../test/support/process.js';
import { freshServerDatabase } from '../../test/support/server-database.js';
import { deleteTopic, loadAverage, servicePids, sleep } from '../cluster.js';
import type { LoadResult } from '../loadgen.js';
import { summariseProfiles, type ThreadProfile } from '../profile.js';
import { argument, emit, fenOf, median, quick } from '../support.js';
import { inParallel, setupApi } from '../setup-api.js';

const SECRET = 'bench-secret';
const mode = process.argv.includes('--services') ? 'services' : 'embedded';
const PROFILE = process.argv.includes('--profile');
const SHARES = 100;
const PACKETS = argument('packets', quick ? 150 : 1_000);
const USERS = argument('users', quick ? 5_000 : 30_000);
/** Opened first on every server, by users of their own, so the measured load meets warm code. */
const WARMUP_PACKETS = quick ? 10 : 50;
const WARMUP_USERS = 1_000;
const CONNECTIONS = Number(process.env.HTTP_CONNECTIONS ?? 256);
const RUNS = argument('runs', quick ? 1 : 3);
/** The load generator's time bound per run: past it the scenario fails. */
const BOUND_S = argument('bound-s', quick ? 180 : 600);
const TICKS_PER_SECOND = 100; // USER_HZ: 100 on every Linux this runs on (getconf CLK_TCK)
const BROKERS = process.env.KAFKA_BROKERS ?? '127.0.0.1:9092';
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

// ---------------------------------------------------------------- the API, for set-up and checks

const api = setupApi({ connections: 64, timeoutMs: 300_000 });

const yuan = (amountFen: number) => `${Math.floor(amountFen / 100)}.${String(amountFen % 100).padStart(2, '0')}`;

// ---------------------------------------------------------------- processes and their CPU

interface Server {
  readonly url: string;
  readonly child: ChildProcess;
  /** SIGINT and the wait for a clean exit (a CPU profile is written then); SIGKILL after 60 s. */
  stop(): Promise<void>;
}

async function startServer(args: string[], env: Record<string, string>, readyPath: string): Promise<Server> {
  const port = await freePort();
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1' }, stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGINT');
    const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    await exited;
    clearTimeout(killer);
  };
  const url = `http://127.0.0.1:${port}`;
  for (let attempt = 0; attempt < 1_200; attempt += 1) {
    if (child.exitCode !== null) throw new Error(`${args.join(' ')} exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${url}${readyPath}`)).status === 200) return { url, child, stop };
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  child.kill('SIGKILL');
  throw new Error(`${args.join(' ')} did not start`);
}

/** utime + stime of a process (all its threads), and cutime + cstime: the children it has reaped. */
function ownTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
  } catch {
    return 0; // gone
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

/** A process and all its descendants, in clock ticks. */
function treeTicks(pid: number): number {
  return ownTicks(pid) + childrenOf(pid).reduce((sum, child) => sum + treeTicks(child), 0);
}

function machineBusyTicks(): number {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return fields.reduce((sum, value) => sum + value, 0) - (fields[3] ?? 0) - (fields[4] ?? 0);
}

type Services = Record<'postgres' | 'kafka' | 'redis', number>;

/** CPU over a window: the server's tree, the services (by process, found again at the end), the machine. */
function cpuWindow(serverPid: number, databaseName: string | undefined) {
  const servicesTicks = () => {
    const found = servicePids(databaseName);
    return Object.fromEntries(Object.entries(found).map(([name, pids]) => [name, new Map(pids.map((pid) => [pid, ownTicks(pid)]))])) as Record<keyof Services, Map<number, number>>;
  };
  const start = { server: treeTicks(serverPid), services: databaseName === undefined ? undefined : servicesTicks(), machine: machineBusyTicks(), at: performance.now() };
  return () => {
    const server = treeTicks(serverPid) - start.server;
    const machine = machineBusyTicks() - start.machine;
    let services: Services | undefined;
    if (start.services !== undefined) {
      const end = servicesTicks();
      // A process that started inside the window counts from zero; one that ended is lost (short-lived backends).
      const moved = (name: keyof Services) => [...end[name]].reduce((sum, [pid, ticks]) => sum + ticks - (start.services![name].get(pid) ?? 0), 0);
      services = { postgres: moved('postgres'), kafka: moved('kafka'), redis: moved('redis') };
    }
    const micros = (ticks: number) => (ticks / TICKS_PER_SECOND) * 1e6;
    return {
      seconds: (performance.now() - start.at) / 1000,
      serverUs: micros(server),
      machineUs: micros(machine),
      servicesUs: services && { postgres: micros(services.postgres), kafka: micros(services.kafka), redis: micros(services.redis) },
    };
  };
}

// ---------------------------------------------------------------- the work and the load generator

interface Line {
  readonly packet: number;
  readonly user: number;
}

/**
 * Every (packet, user) pair once: in rounds over all packets (round r opens share r of each),
 * packet p's users are p·shares + r (mod users), distinct within a packet while users ≥ shares.
 */
function workLines(packets: number, users: number): Line[] {
  if (users < SHARES) throw new Error(`need at least ${SHARES} users`);
  const lines: Line[] = [];
  for (let round = 0; round < SHARES; round += 1) for (let packet = 0; packet < packets; packet += 1) lines.push({ packet, user: (packet * SHARES + round) % users });
  return lines;
}

function writeWork(folder: string, name: string, entries: readonly { path: string; token: string }[]): string {
  const file = join(folder, `${name}.txt`);
  writeFileSync(file, entries.map((entry) => `${entry.path} ${entry.token}\n`).join(''));
  return file;
}

/** Runs bench/loadgen.ts on a work file: `onStart` runs just before it sends, and the function it returns just after its last answer. */
async function runLoad<T>(url: string, file: string, onStart: () => () => T): Promise<{ load: LoadResult; window: T; fromUs: number; toUs: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/loadgen.ts', '--work', file, '--url', url, '--connections', String(CONNECTIONS), '--bound-s', String(BOUND_S)], {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    let end: (() => T) | undefined;
    let window: T | undefined;
    let fromUs = 0;
    let toUs = 0;
    const nowUs = () => Number(process.hrtime.bigint() / 1000n);
    child.on('message', (message: any) => {
      if (message.type === 'ready') {
        end = onStart();
        fromUs = nowUs();
        child.send({ type: 'go' });
      } else if (message.type === 'end') {
        toUs = nowUs();
        window = end!();
      } else if (message.type === 'result') {
        const load = message.result as LoadResult;
        if (!load.ok) reject(new Error(`the load generator failed: ${load.error ?? 'not every open was claimed'} (answers: ${JSON.stringify(load.states)})`));
        else resolve({ load, window: window!, fromUs, toUs });
      }
    });
    child.once('exit', (code) => reject(new Error(`the load generator exited with ${code} before its result`)));
  });
}

function figures(load: LoadResult, cpu: ReturnType<ReturnType<typeof cpuWindow>>) {
  const claims = load.amountsFen.filter((amount) => amount >= 0).length;
  const seconds = load.windowMs / 1000;
  const perClaim = (us: number) => us / claims;
  const servicesUs = cpu.servicesUs ? cpu.servicesUs.postgres + cpu.servicesUs.kafka + cpu.servicesUs.redis : 0;
  return {
    requests: load.requests,
    claims,
    seconds,
    requestsPerSecond: load.requests / seconds,
    claimsPerSecond: claims / seconds,
    p50Ms: load.p50Ms,
    p99Ms: load.p99Ms,
    states: load.states,
    passes: load.passes,
    alreadyClaimed: load.alreadyClaimed,
    serverCpuUsPerRequest: cpu.serverUs / load.requests,
    serverCpuUsPerClaim: perClaim(cpu.serverUs),
    serverCpuPercent: (cpu.serverUs / 1e6 / seconds) * 100,
    servicesCpuUsPerClaim: cpu.servicesUs && {
      postgres: perClaim(cpu.servicesUs.postgres),
      kafka: perClaim(cpu.servicesUs.kafka),
      redis: perClaim(cpu.servicesUs.redis),
      total: perClaim(servicesUs),
    },
    loadGeneratorCpuPercent: (load.cpuMs / 1000 / seconds) * 100,
    machineCpuPercent: (cpu.machineUs / 1e6 / seconds) * 100,
    // Busy time of the machine outside the server, the services and the load generator: other work, which disturbs the run.
    otherCpuPercent: Math.max(0, ((cpu.machineUs - cpu.serverUs - servicesUs - load.cpuMs * 1000) / 1e6 / seconds) * 100),
  };
}

// ---------------------------------------------------------------- ceiling and hongbao

interface Tokens {
  readonly users: string[];
  readonly warmup: string[];
}

async function ceilingRun(folder: string, tokens: Tokens) {
  const server = await startServer(['--import', 'tsx', 'bench/ceiling-server.ts'], {}, '/');
  try {
    // The same requests as hongbao's, bearer tokens and all, on one fixed path.
    const fixed = (lines: Line[], users: string[]) => lines.map((line) => ({ path: '/v1/packets/x/open', token: users[line.user]! }));
    await runLoad(server.url, writeWork(folder, 'ceiling-warmup', fixed(workLines(WARMUP_PACKETS, WARMUP_USERS), tokens.warmup)), () => () => undefined);
    const { load, window } = await runLoad(server.url, writeWork(folder, 'ceiling', fixed(workLines(PACKETS, USERS), tokens.users)), () => cpuWindow(server.child.pid!, undefined));
    return figures(load, window);
  } finally {
    server.child.kill('SIGKILL');
  }
}

async function hongbaoRun(folder: string, tokens: Tokens, profileDir?: string) {
  const dataDir = mkdtempSync(join(tmpdir(), 'hongbao-bench-claims-'));
  const database = mode === 'services' ? await freshServerDatabase(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test') : undefined;
  const topic = `hongbao-bench-claims-${Date.now().toString(36)}`;
  const services: Record<string, string> = database ? { DATABASE_URL: database.url, KAFKA_BROKERS: BROKERS, KAFKA_TOPIC: topic, REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' } : {};
  const server = await startServer(
    [...(profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []), '--import', 'tsx', 'src/main.ts'],
    // The set-up sends every packet from one sender, faster than the per-user request limit allows.
    { DATA_DIR: dataDir, AUTH_SECRET: SECRET, LOG_LEVEL: 'error', REQUESTS_BURST: '1000000', ...services },
    '/readyz',
  );
  try {
    const admin = await issueToken(SECRET, 'bench-admin', { admin: true });
    const sender = await issueToken(SECRET, 'bench-sender');
    const packetCount = WARMUP_PACKETS + PACKETS;
    const deposit = await api(server.url, 'POST', '/v1/wallet/deposits', admin, { userId: 'bench-sender', amount: `${packetCount * SHARES}.00` }, { 'idempotency-key': 'bench' });
    if (deposit.status !== 201) throw new Error(`deposit: ${deposit.status} ${JSON.stringify(deposit.body)}`);
    const packets: string[] = new Array(packetCount);
    await inParallel(packets, 16, async (_, index) => {
      const sent = await api(server.url, 'POST', '/v1/packets', sender, { type: 'group_lucky', targetId: 'g', count: SHARES, amount: `${SHARES}.00` }, { 'idempotency-key': `p${index}` });
      if (sent.status !== 201) throw new Error(`send ${index}: ${sent.status} ${JSON.stringify(sent.body)}`);
      packets[index] = sent.body.packet.id;
    });
    // Warm-up packets first in `packets`, their users are w0…; the measured users are u0….
    const warmLines = workLines(WARMUP_PACKETS, WARMUP_USERS);
    const lines = workLines(PACKETS, USERS);
    const entry = (packet: string, token: string) => ({ path: `/v1/packets/${packet}/open`, token });
    const warm = await runLoad(server.url, writeWork(folder, 'warmup', warmLines.map((line) => entry(packets[line.packet]!, tokens.warmup[line.user]!))), () => () => undefined);
    const measured = await runLoad(server.url, writeWork(folder, 'claims', lines.map((line) => entry(packets[WARMUP_PACKETS + line.packet]!, tokens.users[line.user]!))), () =>
      cpuWindow(server.child.pid!, database ? new URL(database.url).pathname.slice(1) : undefined),
    );
    const claims = [
      ...warmLines.map((line, index) => ({ packetId: packets[line.packet]!, userId: `w${line.user}`, token: tokens.warmup[line.user]!, amountFen: warm.load.amountsFen[index]!, seq: warm.load.seqs[index]! })),
      ...lines.map((line, index) => ({ packetId: packets[WARMUP_PACKETS + line.packet]!, userId: `u${line.user}`, token: tokens.users[line.user]!, amountFen: measured.load.amountsFen[index]!, seq: measured.load.seqs[index]! })),
    ];
    const verification = await verify(server.url, admin, sender, packets, claims);
    return { ...figures(measured.load, measured.window), verification, window: { fromUs: measured.fromUs, toUs: measured.toUs } };
  } finally {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
    await database?.drop().catch(() => {});
    if (database) await deleteTopic(BROKERS, topic).catch(() => {});
  }
}

// ---------------------------------------------------------------- verification

interface Claim {
  readonly packetId: string;
  readonly userId: string;
  readonly token: string;
  readonly amountFen: number;
  readonly seq: number;
}

/**
 * What the load generator heard against what the server shows: each packet's claims (its result
 * page, as the sender sees it) are exactly the claimed answers, seqs 1…shares, Σ = 100.00; the
 * ledger credited every user exactly the sum of their answers (wallet balance, nothing pending),
 * the sender spent it all, and reconciliation finds nothing.
 */
async function verify(url: string, admin: string, sender: string, packets: readonly string[], claims: readonly Claim[]) {
  const problems: string[] = [];
  const fail = (message: string) => problems.length < 10 && problems.push(message);
  const byPacket = new Map<string, Claim[]>();
  for (const claim of claims) {
    if (!Number.isSafeInteger(claim.amountFen) || claim.amountFen < 1) fail(`${claim.packetId} ${claim.userId}: claimed amount ${claim.amountFen} fen`);
    const list = byPacket.get(claim.packetId);
    if (list === undefined) byPacket.set(claim.packetId, [claim]);
    else list.push(claim);
  }
  const totalFen = claims.reduce((sum, claim) => sum + claim.amountFen, 0);
  if (totalFen !== packets.length * SHARES * 100) fail(`Σ claimed ${yuan(totalFen)} ≠ ${packets.length} packets × ${SHARES}.00`);

  await inParallel(packets, 16, async (packetId) => {
    const mine = byPacket.get(packetId) ?? [];
    const seqs = mine.map((claim) => claim.seq).sort((left, right) => left - right);
    if (seqs.length !== SHARES || seqs.some((seq, index) => seq !== index + 1)) fail(`${packetId}: the answers' seqs are not 1…${SHARES}`);
    if (mine.reduce((sum, claim) => sum + claim.amountFen, 0) !== SHARES * 100) fail(`${packetId}: the answers add up to ${yuan(mine.reduce((sum, claim) => sum + claim.amountFen, 0))}`);
    const page = await api(url, 'GET', `/v1/packets/${packetId}`, sender);
    if (page.status !== 200) return void fail(`${packetId}: result page ${page.status}`);
    const listed: { userId: string; amount: string }[] = page.body.claims ?? [];
    const expected = new Map(mine.map((claim) => [claim.userId, claim.amountFen]));
    if (listed.length !== mine.length) fail(`${packetId}: the page lists ${listed.length} claims, ${mine.length} were answered`);
    for (const claim of listed) {
      if (expected.get(claim.userId) !== fenOf(claim.amount)) fail(`${packetId}: the page lists ${claim.userId} ${claim.amount}, the answer said ${yuan(expected.get(claim.userId) ?? 0)}`);
      expected.delete(claim.userId); // a second listing of one user fails above
    }
    if (page.body.packet.status !== 'finished' || page.body.packet.claimedAmount !== `${SHARES}.00`) fail(`${packetId}: ${page.body.packet.status}, claimed ${page.body.packet.claimedAmount}`);
  });

  // The ledger books asynchronously: wait until every wallet holds what its user was answered.
  const users = new Map<string, { token: string; fen: number }>();
  for (const claim of claims) users.set(claim.userId, { token: claim.token, fen: (users.get(claim.userId)?.fen ?? 0) + claim.amountFen });
  const started = Date.now();
  let unbooked: string[] = [...users.keys()];
  while (unbooked.length > 0 && Date.now() - started < 300_000) {
    const still: string[] = [];
    await inParallel(unbooked, 32, async (userId) => {
      const wallet = await api(url, 'GET', '/v1/wallet', users.get(userId)!.token);
      if (wallet.status !== 200 || wallet.body.balance !== yuan(users.get(userId)!.fen) || wallet.body.pending !== '0.00') still.push(userId);
    });
    unbooked = still;
    if (unbooked.length > 0) await sleep(1_000);
  }
  if (unbooked.length > 0) fail(`${unbooked.length} wallets never held what their users were answered (e.g. ${unbooked[0]})`);
  const bookedAfterMs = Date.now() - started;
  const senderWallet = await api(url, 'GET', '/v1/wallet', sender);
  if (senderWallet.body.balance !== '0.00') fail(`the sender kept ${senderWallet.body.balance}`);
  const report = await api(url, 'POST', '/v1/admin/reconcile', admin);
  if (report.status !== 200 || report.body.discrepancies.length > 0) fail(`reconcile: ${report.status} ${JSON.stringify(report.body).slice(0, 500)}`);
  if (!(report.body.checkedLogClaims >= claims.length)) fail(`reconcile checked ${report.body.checkedLogClaims} claims of the log, ${claims.length} were answered`);
  if (problems.length > 0) throw new Error(`verification failed:\n  ${problems.join('\n  ')}`);
  return { claims: claims.length, users: users.size, total: yuan(totalFen), bookedAfterMs, checkedPackets: report.body.checkedPackets, checkedLogClaims: report.body.checkedLogClaims, discrepancies: 0 };
}

// ---------------------------------------------------------------- the scenario

const medianOf = <Run>(runs: Run[], pick: (run: Run) => number) => median(runs.map(pick));
const summed = (runs: { states: Record<string, number> }[]) => {
  const states: Record<string, number> = {};
  for (const run of runs) for (const [state, count] of Object.entries(run.states)) states[state] = (states[state] ?? 0) + count;
  return states;
};

const loadAverageAtStart = loadAverage();
const folder = mkdtempSync(join(tmpdir(), 'hongbao-bench-claims-work-'));
try {
  // Minted before any clock starts; each server is fresh, so every user is new to it.
  const tokens: Tokens = {
    users: await Promise.all(Array.from({ length: USERS }, (_, index) => issueToken(SECRET, `u${index}`))),
    warmup: await Promise.all(Array.from({ length: WARMUP_USERS }, (_, index) => issueToken(SECRET, `w${index}`))),
  };
  const ceilingRuns: Awaited<ReturnType<typeof ceilingRun>>[] = [];
  const hongbaoRuns: Awaited<ReturnType<typeof hongbaoRun>>[] = [];
  const loadAverageByRound: number[] = [];
  for (let round = 0; round < RUNS; round += 1) {
    loadAverageByRound.push(loadAverage());
    process.stderr.write(`[claims] ${mode} round ${round + 1}/${RUNS} (load ${loadAverageByRound.at(-1)!.toFixed(2)}): ceiling …`);
    ceilingRuns.push(await ceilingRun(folder, tokens));
    process.stderr.write(` ${Math.round(ceilingRuns.at(-1)!.requestsPerSecond)} req/s; hongbao …`);
    hongbaoRuns.push(await hongbaoRun(folder, tokens));
    const run = hongbaoRuns.at(-1)!;
    process.stderr.write(` ${Math.round(run.requestsPerSecond)} req/s, p99 ${run.p99Ms} ms, ${Math.round(run.serverCpuUsPerClaim)} µs CPU per claim, verified\n`);
  }
  let profile: { threads: ThreadProfile[]; pass: object } | undefined;
  if (PROFILE) {
    // --profile-dir <folder> keeps the .cpuprofile files (for Chrome DevTools); otherwise a temporary folder.
    const keep = process.argv.indexOf('--profile-dir');
    const profileDir = keep >= 0 ? process.argv[keep + 1]! : mkdtempSync(join(tmpdir(), 'hongbao-bench-claims-profile-'));
    process.stderr.write(`[claims] ${mode} profiled pass (not measured) …`);
    const run = await hongbaoRun(folder, tokens, profileDir);
    profile = {
      threads: summariseProfiles(profileDir, run.window),
      pass: { requestsPerSecond: run.requestsPerSecond, serverCpuUsPerClaim: run.serverCpuUsPerClaim, note: 'under --cpu-prof: slower than the measured runs, for the shares only' },
    };
    if (keep < 0) rmSync(profileDir, { recursive: true, force: true });
    process.stderr.write(` done\n`);
  }
  const servicesMedian = (name: 'postgres' | 'kafka' | 'redis' | 'total') => medianOf(hongbaoRuns, (run) => run.servicesCpuUsPerClaim?.[name] ?? Number.NaN);
  const ceiling = {
    requestsPerSecond: medianOf(ceilingRuns, (run) => run.requestsPerSecond),
    p50Ms: medianOf(ceilingRuns, (run) => run.p50Ms),
    p99Ms: medianOf(ceilingRuns, (run) => run.p99Ms),
    serverCpuUsPerRequest: medianOf(ceilingRuns, (run) => run.serverCpuUsPerRequest),
    loadGeneratorCpuPercent: medianOf(ceilingRuns, (run) => run.loadGeneratorCpuPercent),
    runs: ceilingRuns,
  };
  const hongbao = {
    requestsPerSecond: medianOf(hongbaoRuns, (run) => run.requestsPerSecond),
    claimsPerSecond: medianOf(hongbaoRuns, (run) => run.claimsPerSecond),
    p50Ms: medianOf(hongbaoRuns, (run) => run.p50Ms),
    p99Ms: medianOf(hongbaoRuns, (run) => run.p99Ms),
    serverCpuUsPerRequest: medianOf(hongbaoRuns, (run) => run.serverCpuUsPerRequest),
    serverCpuUsPerClaim: medianOf(hongbaoRuns, (run) => run.serverCpuUsPerClaim),
    servicesCpuUsPerClaim: mode === 'services' ? { postgres: servicesMedian('postgres'), kafka: servicesMedian('kafka'), redis: servicesMedian('redis'), total: servicesMedian('total') } : undefined,
    loadGeneratorCpuPercent: medianOf(hongbaoRuns, (run) => run.loadGeneratorCpuPercent),
    otherCpuPercent: medianOf(hongbaoRuns, (run) => run.otherCpuPercent),
    states: summed(hongbaoRuns),
    runs: hongbaoRuns.map(({ window: _window, ...run }) => run),
  };
  emit({
    scenario: 'claims',
    mode,
    quick,
    connections: CONNECTIONS,
    pipelining: 1,
    packets: PACKETS,
    sharesPerPacket: SHARES,
    users: USERS,
    warmupPackets: WARMUP_PACKETS,
    runs: RUNS,
    loadAverageAtStart,
    loadAverageByRound,
    ceiling,
    hongbao,
    ratioToCeiling: hongbao.requestsPerSecond / ceiling.requestsPerSecond,
    ...(profile ? { profile } : {}),
  });
} finally {
  rmSync(folder, { recursive: true, force: true });
  await api.close();
}
