// npm run cluster -- --nodes 3: several engine nodes and one ledger on the real services of this
// machine (Kafka, Postgres, Redis), each a child process of this one running `src/main.ts` with
// its own NODE_ID, port and ADVERTISE_URL. Prints each node's URL once it is ready, prefixes each
// child's output with its name, and stops them all on Ctrl-C or SIGTERM.
//
//   npm run cluster -- [--nodes N] [--base-port P] [--ledger-port P] [--topic T] [--ready-timeout S]
//
// Engine nodes node-1..node-N listen on P..P+N-1 (default 3001..); the ledger (ledger-1) on
// --ledger-port (default P+N). KAFKA_BROKERS, DATABASE_URL, REDIS_URL, KAFKA_TOPIC and every other
// setting of README "Settings" come from the environment as for `npm start`.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const HOST = '127.0.0.1';
/** How long a service may take to accept a TCP connection before it counts as down. */
const SERVICE_CONNECT_TIMEOUT_MS = 2_000;
/** How often a starting node's /readyz is asked. */
const READY_POLL_MS = 250;
/** How long the nodes get to stop on SIGTERM before they are killed. */
const STOP_TIMEOUT_MS = 15_000;
const NODES_MAX = 64;
/** How often this process checks that whoever started it is still there. */
const PARENT_CHECK_MS = 1_000;

const USAGE =
  'usage: npm run cluster -- [--nodes N] [--base-port P] [--ledger-port P] [--topic T] [--ready-timeout SECONDS]';

function fail(message: string, code = 2): never {
  console.error(`cluster: ${message}`);
  process.exit(code);
}

function integerOption(name: string, text: string | undefined, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) fail(`--${name} must be an integer from ${min} to ${max} (got ${text})\n${USAGE}`);
  return value;
}

let parsed;
try {
  parsed = parseArgs({
    options: {
      nodes: { type: 'string' },
      'base-port': { type: 'string' },
      'ledger-port': { type: 'string' },
      topic: { type: 'string' },
      'ready-timeout': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  }).values;
} catch (error) {
  fail(`${(error as Error).message}\n${USAGE}`);
}
if (parsed.help) {
  console.log(USAGE);
  process.exit(0);
}
const nodeCount = integerOption('nodes', parsed.nodes, 3, 1, NODES_MAX);
const basePort = integerOption('base-port', parsed['base-port'], 3001, 1, 65_535 - nodeCount);
const ledgerPort = integerOption('ledger-port', parsed['ledger-port'], basePort + nodeCount, 1, 65_535);
const readyTimeoutMs = integerOption('ready-timeout', parsed['ready-timeout'], 120, 1, 3_600) * 1000;
const topic = parsed.topic ?? process.env.KAFKA_TOPIC ?? 'hongbao.packet-events';
if (ledgerPort >= basePort && ledgerPort < basePort + nodeCount) fail(`--ledger-port ${ledgerPort} is one of the engine ports ${basePort}..${basePort + nodeCount - 1}`);

const services = {
  KAFKA_BROKERS: process.env.KAFKA_BROKERS ?? '127.0.0.1:9092',
  DATABASE_URL: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
  REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
};

interface NodeSpec {
  readonly name: string;
  readonly role: 'engine' | 'ledger';
  readonly port: number;
  readonly url: string;
}

const specs: NodeSpec[] = [
  ...Array.from({ length: nodeCount }, (_, index): NodeSpec => ({
    name: `node-${index + 1}`,
    role: 'engine',
    port: basePort + index,
    url: `http://${HOST}:${basePort + index}`,
  })),
  { name: 'ledger-1', role: 'ledger', port: ledgerPort, url: `http://${HOST}:${ledgerPort}` },
];
/** The cluster's one sandbox provider: SANDBOX_URL if given, else the one node-1 serves. */
const sandboxUrl: string = process.env.SANDBOX_URL ?? `${specs[0]!.url}/sandbox`;
const nameWidth = Math.max(...specs.map((spec) => spec.name.length));
const colors = process.stdout.isTTY ? [36, 33, 35, 32, 34, 91, 93, 95, 96] : [];
const label = (spec: NodeSpec, index: number) => {
  const text = `[${spec.name}]`.padEnd(nameWidth + 2);
  const color = colors[index % Math.max(colors.length, 1)];
  return color === undefined ? text : `\u001b[${color}m${text}\u001b[0m`;
};
const say = (message: string) => console.log(`[cluster] ${message}`);

// ---------------------------------------------------------------- checks before starting

/** host:port pairs of a service setting (a broker list or a URL). */
function endpointsOf(name: keyof typeof services): { host: string; port: number }[] {
  const value = services[name];
  if (name === 'KAFKA_BROKERS') {
    return value.split(',').map((broker) => broker.trim()).filter(Boolean).map((broker) => {
      const at = broker.lastIndexOf(':');
      return { host: broker.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(broker.slice(at + 1)) };
    });
  }
  const url = new URL(value);
  return [{ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || (name === 'DATABASE_URL' ? 5432 : 6379)) }];
}

function answers(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(SERVICE_CONNECT_TIMEOUT_MS, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, HOST, () => server.close(() => resolve(true)));
  });
}

const down: string[] = [];
for (const name of Object.keys(services) as (keyof typeof services)[]) {
  for (const { host, port } of endpointsOf(name)) if (!(await answers(host, port))) down.push(`${name} ${host}:${port}`);
}
if (down.length > 0) {
  fail(`no answer from ${down.join(', ')}.\nStart the services with: bash scripts/services.sh up   (or point the variables elsewhere)`, 1);
}
const taken: number[] = [];
for (const spec of specs) if (!(await portFree(spec.port))) taken.push(spec.port);
if (taken.length > 0) fail(`port${taken.length > 1 ? 's' : ''} ${taken.join(', ')} already in use on ${HOST}; stop what listens there or pick --base-port / --ledger-port`, 1);

// ---------------------------------------------------------------- the nodes

interface Running {
  readonly spec: NodeSpec;
  readonly child: ChildProcess;
  ready: boolean;
  exited: boolean;
}

let stopping = false;
const running: Running[] = [];

function start(spec: NodeSpec, index: number): Running {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      ...services,
      KAFKA_TOPIC: topic,
      ROLE: spec.role,
      NODE_ID: spec.name,
      HOST,
      PORT: String(spec.port),
      ADVERTISE_URL: spec.url,
      // One sandbox provider for the whole cluster (orders live in the provider, not in a node):
      // node-1 serves it at /sandbox, every other node uses that one.
      ...(index === 0 && process.env.SANDBOX_URL === undefined ? {} : { SANDBOX_URL: sandboxUrl }),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const node: Running = { spec, child, ready: false, exited: false };
  const prefix = label(spec, index);
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => process.stdout.write(`${prefix} ${line}\n`));
  }
  child.once('exit', (code, signal) => {
    node.exited = true;
    if (stopping) return;
    const how = signal === null ? `with code ${code}` : `on ${signal}`;
    say(`${spec.name} (${spec.role}, ${spec.url}) exited ${how}; ${running.some((other) => !other.exited) ? 'the others keep running (Ctrl-C stops them)' : 'no node is left'}`);
    if (running.every((other) => other.exited)) process.exit(1);
  });
  return node;
}

/** What /readyz says now: ready, not ready with its reason, or no answer yet. */
async function readiness(url: string): Promise<{ ready: boolean; reason: string }> {
  try {
    const response = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2_000) });
    if (response.status === 200) return { ready: true, reason: '' };
    const body = (await response.json().catch(() => ({}))) as { error?: { message?: string } };
    return { ready: false, reason: body.error?.message ?? `HTTP ${response.status}` };
  } catch {
    return { ready: false, reason: 'not listening yet' };
  }
}

async function stopAll(signal: string): Promise<never> {
  if (stopping) {
    // A second Ctrl-C: no more waiting.
    for (const node of running) if (!node.exited) node.child.kill('SIGKILL');
    process.exit(130);
  }
  stopping = true;
  say(`${signal}: stopping ${running.filter((node) => !node.exited).length} node(s)`);
  const exits = running.filter((node) => !node.exited).map((node) => new Promise<void>((resolve) => node.child.once('exit', () => resolve())));
  for (const node of running) if (!node.exited) node.child.kill('SIGTERM');
  const killer = setTimeout(() => {
    for (const node of running) {
      if (node.exited) continue;
      say(`${node.spec.name} did not stop within ${STOP_TIMEOUT_MS / 1000} s: SIGKILL`);
      node.child.kill('SIGKILL');
    }
  }, STOP_TIMEOUT_MS);
  await Promise.all(exits);
  clearTimeout(killer);
  say('stopped');
  process.exit(0);
}
process.on('SIGINT', () => void stopAll('SIGINT'));
process.on('SIGTERM', () => void stopAll('SIGTERM'));
process.on('SIGHUP', () => void stopAll('SIGHUP'));
// `npm run` does not always pass a signal on (a SIGTERM to npm ends npm and its shell, and
// leaves this process to init): a parent that is gone stops the nodes too.
const parentPid = process.ppid;
setInterval(() => {
  if (process.ppid !== parentPid) void stopAll(`parent process ${parentPid} exited`);
}, PARENT_CHECK_MS).unref();

say(`starting ${nodeCount} engine node(s) and a ledger · topic ${topic} · kafka ${services.KAFKA_BROKERS} · ${new URL(services.DATABASE_URL).host}${new URL(services.DATABASE_URL).pathname} · redis ${new URL(services.REDIS_URL).host}`);
// Together: on a fresh database the first to get the migrations lock migrates, the others wait for it.
specs.forEach((spec, index) => running.push(start(spec, index)));

const summary = (node: Running, state: string) =>
  `${node.spec.name.padEnd(nameWidth)}  ${node.spec.role.padEnd(6)}  ${node.spec.url.padEnd(22)}  ${state}`;
const deadline = Date.now() + readyTimeoutMs;
const lastReason = new Map<string, string>();
while (!stopping && running.some((node) => !node.ready && !node.exited) && Date.now() < deadline) {
  await Promise.all(
    running.map(async (node) => {
      if (node.ready || node.exited) return;
      const state = await readiness(node.spec.url);
      if (state.ready) node.ready = true;
      else lastReason.set(node.spec.name, state.reason);
    }),
  );
  await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
}
if (stopping) await new Promise(() => {}); // stopAll exits
if (running.every((node) => node.exited)) process.exit(1);

const lines = ['', `hongbao cluster: ${nodeCount} engine node(s) + 1 ledger, topic ${topic}`];
for (const node of running) {
  const state = node.exited ? 'EXITED' : node.ready ? 'ready' : `NOT READY after ${readyTimeoutMs / 1000} s: ${lastReason.get(node.spec.name)}`;
  lines.push(`  ${summary(node, state)}`);
}
const engineUrl = specs[0]!.url;
lines.push(
  '',
  'try:',
  `  curl -s ${engineUrl}/readyz            # any node: ${specs.filter((spec) => spec.role === 'engine').map((spec) => spec.url.replace(`http://${HOST}:`, ':')).join(' ')}`,
  '  ADMIN=$(npm run -s token -- ops --admin)',
  `  curl -s ${engineUrl}/v1/admin/cluster -H "Authorization: Bearer $ADMIN"`,
  '  (then the curl lines of README "Use it" with API= any engine URL above)',
  'Ctrl-C stops them all.',
  '',
);
console.log(lines.join('\n'));

// Nodes that were not ready in time are still watched: say when they become ready.
while (!stopping && running.some((node) => !node.ready && !node.exited)) {
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  for (const node of running) {
    if (node.ready || node.exited || stopping) continue;
    if ((await readiness(node.spec.url)).ready) {
      node.ready = true;
      say(`${node.spec.name} is ready now (${node.spec.url})`);
    }
  }
}
