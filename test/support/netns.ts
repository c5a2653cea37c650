// Network namespaces for tests that need separate hosts, not just separate processes: a bridge
// on this machine and one namespace per node, each joined to the bridge by a veth pair, with
// addresses of a 10.x.y.0/24 picked per run. The namespaces have no default route and this
// machine does not forward, so no packet leaves it. Everything is named `hb<random>…` and is
// removed by destroy() (call it in afterAll); a lab left behind by a run that died is removed by
// the next run (its creator's pid is written under /run/hongbao-netns).
//
// The services (Kafka, Postgres, Redis) listen on 127.0.0.1 only, and Kafka advertises
// 127.0.0.1:9092. So that a node in a namespace reaches them without any change to the services:
//   - on this machine, one relay bound to the bridge address per service port, forwarding to
//     127.0.0.1 (Postgres then sees a local connection, which its pg_hba trusts);
//   - in each namespace, one relay bound to the namespace's own 127.0.0.1:9092, forwarding to
//     the bridge address, because the Kafka client connects to the address the broker advertises.
// The relays are tiny node `net` processes (RELAY_SOURCE), one per side.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const STATE_DIR = '/run/hongbao-netns';
/** Linux interface names are at most 15 characters: `hb` + 6 + a suffix of at most 7. */
const ID_RANDOM_CHARS = 6;
const NAMESPACES_MAX = 200;
const RELAY_READY_TIMEOUT_MS = 10_000;

/** A TCP relay: `node -e RELAY_SOURCE listenHost:listenPort:targetHost:targetPort …`; prints "relay ready" once all listen. */
const RELAY_SOURCE = `
const net = require('node:net');
const specs = process.argv.slice(1).map((spec) => spec.split(':'));
let listening = 0;
for (const [listenHost, listenPort, targetHost, targetPort] of specs) {
  net.createServer({ noDelay: true }, (client) => {
    const upstream = net.connect({ host: targetHost, port: Number(targetPort), noDelay: true });
    const close = () => { client.destroy(); upstream.destroy(); };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    client.pipe(upstream);
    upstream.pipe(client);
  }).on('error', (error) => { console.error('relay ' + listenHost + ':' + listenPort + ': ' + error.message); process.exit(1); })
    .listen(Number(listenPort), listenHost, () => { if (++listening === specs.length) console.log('relay ready'); });
}
process.on('SIGTERM', () => process.exit(0));
// stdin is a pipe from the test process: when that process is gone, so is the relay.
process.stdin.on('end', () => process.exit(0)).on('error', () => process.exit(0)).resume();
`;

export interface Relay {
  readonly listenHost: string;
  readonly listenPort: number;
  readonly targetHost: string;
  readonly targetPort: number;
}

export interface Namespace {
  readonly name: string;
  /** Its address on the bridge. */
  readonly address: string;
  /** Prefix a command with this to run it inside the namespace (`ip netns exec` execs: the pid is the command's). */
  readonly wrap: readonly string[];
}

export interface NetnsLab {
  readonly id: string;
  readonly bridge: string;
  /** The bridge's address: how a namespace reaches this machine (and the service relays). */
  readonly bridgeAddress: string;
  readonly subnet: string;
  readonly namespaces: readonly Namespace[];
  /** A new namespace on the bridge, with its address and loopback up, and the in-namespace relays. */
  addNamespace(): Promise<Namespace>;
  /**
   * Settings that point a node in a namespace at the services of this machine, through the
   * relays: Postgres and Redis on the bridge address, Kafka on the namespace's 127.0.0.1:9092.
   */
  servicesEnv(env: Readonly<Record<string, string>>): { DATABASE_URL: string; REDIS_URL: string; KAFKA_BROKERS: string };
  /** Stops the relays, deletes the namespaces, their veth pairs and the bridge. Safe to call twice. */
  destroy(): Promise<void>;
}

interface LabState {
  readonly pid: number;
  readonly bridge: string;
  namespaces: string[];
}

async function ip(...args: string[]): Promise<string> {
  try {
    return (await run('ip', args, { timeout: 10_000 })).stdout;
  } catch (error) {
    const failure = error as Error & { stderr?: string };
    throw new Error(`ip ${args.join(' ')}: ${failure.stderr?.trim() || failure.message}`, { cause: error });
  }
}

const pidAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** Removes what a lab left behind (its processes were in its namespaces: they die with the test run). */
async function removeLab(state: LabState): Promise<void> {
  for (const name of state.namespaces) {
    // Processes still in the namespace (a relay, a node of a killed run) keep it alive: end them first.
    const pids = (await ip('netns', 'pids', name).catch(() => '')).split(/\s+/).filter(Boolean);
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone already
      }
    }
    await ip('netns', 'delete', name).catch(() => {}); // takes its end of the veth pair, and so the pair
  }
  await ip('link', 'delete', state.bridge).catch(() => {});
}

/** Labs of runs whose process is gone: removed before a new one is made. */
async function sweepStaleLabs(): Promise<void> {
  let files: string[];
  try {
    files = readdirSync(STATE_DIR);
  } catch {
    return;
  }
  for (const file of files) {
    const path = join(STATE_DIR, file);
    let state: LabState;
    try {
      state = JSON.parse(readFileSync(path, 'utf8')) as LabState;
    } catch {
      continue;
    }
    if (pidAlive(state.pid)) continue;
    await removeLab(state);
    rmSync(path, { force: true });
  }
}

/** A 10.x.y.0/24 that no address or route of this machine uses. */
async function freeSubnet(): Promise<{ prefix: string; subnet: string }> {
  const inUse = `${await ip('-4', 'addr')}\n${await ip('-4', 'route')}`;
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const prefix = `10.${100 + randomBytes(1)[0]! % 100}.${randomBytes(1)[0]!}`;
    if (!inUse.includes(`${prefix}.`)) return { prefix, subnet: `${prefix}.0/24` };
  }
  throw new Error('no free 10.x.y.0/24 found for the test bridge');
}

function startRelay(wrap: readonly string[], relays: readonly Relay[]): Promise<ChildProcess> {
  const specs = relays.map((relay) => `${relay.listenHost}:${relay.listenPort}:${relay.targetHost}:${relay.targetPort}`);
  const command = [...wrap, process.execPath, '-e', RELAY_SOURCE, ...specs];
  const child = spawn(command[0]!, command.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`relay ${specs.join(' ')} not listening within ${RELAY_READY_TIMEOUT_MS} ms: ${output}`));
    }, RELAY_READY_TIMEOUT_MS);
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('relay ready')) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`relay ${specs.join(' ')} exited with ${code}: ${output}`));
    });
  });
}

const hostPortOf = (text: string, defaultPort: number) => {
  const url = new URL(text.includes('://') ? text : `tcp://${text}`);
  return { host: url.hostname, port: Number(url.port || defaultPort) };
};

export interface LabOptions {
  /** The services to relay, as the test process reaches them (default: the services settings of this run). */
  readonly services?: { DATABASE_URL: string; REDIS_URL: string; KAFKA_BROKERS: string };
}

/**
 * Makes a bridge with relays to the services; namespaces are added with addNamespace. Needs root
 * (CAP_NET_ADMIN) and iproute2: fails with a message that says so otherwise.
 */
export async function createNetnsLab(options: LabOptions = {}): Promise<NetnsLab> {
  if (process.getuid?.() !== 0) throw new Error('network namespace tests need root (CAP_NET_ADMIN): run them as root');
  await ip('-V').catch((error: unknown) => {
    throw new Error(`network namespace tests need iproute2 (the ip command): ${(error as Error).message}`);
  });
  const services = options.services ?? {
    DATABASE_URL: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    KAFKA_BROKERS: process.env.KAFKA_BROKERS ?? '127.0.0.1:9092',
  };
  const kafka = hostPortOf(services.KAFKA_BROKERS.split(',')[0]!.trim(), 9092);
  const postgres = hostPortOf(services.DATABASE_URL, 5432);
  const redis = hostPortOf(services.REDIS_URL, 6379);

  mkdirSync(STATE_DIR, { recursive: true });
  await sweepStaleLabs();
  const id = `hb${randomBytes(8).toString('hex').slice(0, ID_RANDOM_CHARS)}`;
  const { prefix, subnet } = await freeSubnet();
  const bridge = `${id}br`;
  const bridgeAddress = `${prefix}.1`;
  const statePath = join(STATE_DIR, `${id}.json`);
  const state: LabState = { pid: process.pid, bridge, namespaces: [] };
  const saveState = () => writeFileSync(statePath, JSON.stringify(state));
  saveState();

  const relays: ChildProcess[] = [];
  const namespaces: Namespace[] = [];
  let destroyed = false;
  const destroy = async () => {
    if (destroyed) return;
    destroyed = true;
    await Promise.all(
      relays.map(
        (relay) =>
          new Promise<void>((resolve) => {
            if (relay.exitCode !== null || relay.signalCode !== null) return resolve();
            relay.once('exit', () => resolve());
            relay.kill('SIGKILL');
          }),
      ),
    );
    await removeLab(state);
    rmSync(statePath, { force: true });
  };

  try {
    await ip('link', 'add', bridge, 'type', 'bridge');
    await ip('addr', 'add', `${bridgeAddress}/24`, 'dev', bridge);
    await ip('link', 'set', bridge, 'up');
    // This machine's side: the bridge address forwards to where the services listen.
    relays.push(
      await startRelay(
        [],
        [
          { listenHost: bridgeAddress, listenPort: kafka.port, targetHost: kafka.host, targetPort: kafka.port },
          { listenHost: bridgeAddress, listenPort: postgres.port, targetHost: postgres.host, targetPort: postgres.port },
          { listenHost: bridgeAddress, listenPort: redis.port, targetHost: redis.host, targetPort: redis.port },
        ],
      ),
    );
  } catch (error) {
    await destroy();
    throw error;
  }

  const lab: NetnsLab = {
    id,
    bridge,
    bridgeAddress,
    subnet,
    namespaces,
    async addNamespace() {
      if (namespaces.length >= NAMESPACES_MAX) throw new Error(`at most ${NAMESPACES_MAX} namespaces per lab`);
      const index = namespaces.length + 1;
      const name = `${id}-${index}`;
      const hostEnd = `${id}h${index}`;
      const namespaceEnd = `${id}n${index}`;
      const address = `${prefix}.${index + 1}`;
      state.namespaces.push(name);
      saveState();
      await ip('netns', 'add', name);
      await ip('link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', namespaceEnd);
      await ip('link', 'set', namespaceEnd, 'netns', name);
      await ip('link', 'set', hostEnd, 'master', bridge);
      await ip('link', 'set', hostEnd, 'up');
      await ip('-n', name, 'addr', 'add', `${address}/24`, 'dev', namespaceEnd);
      await ip('-n', name, 'link', 'set', namespaceEnd, 'up');
      await ip('-n', name, 'link', 'set', 'lo', 'up');
      const wrap = ['ip', 'netns', 'exec', name] as const;
      // Kafka's advertised 127.0.0.1:9092, inside the namespace, reaches the broker through the bridge.
      relays.push(await startRelay(wrap, [{ listenHost: '127.0.0.1', listenPort: kafka.port, targetHost: bridgeAddress, targetPort: kafka.port }]));
      const namespace: Namespace = { name, address, wrap };
      namespaces.push(namespace);
      return namespace;
    },
    servicesEnv(env) {
      if (env.DATABASE_URL === undefined || env.REDIS_URL === undefined) throw new Error('servicesEnv needs DATABASE_URL and REDIS_URL');
      const database = new URL(env.DATABASE_URL);
      database.hostname = bridgeAddress;
      const redisUrl = new URL(env.REDIS_URL);
      redisUrl.hostname = bridgeAddress;
      return { DATABASE_URL: database.toString(), REDIS_URL: redisUrl.toString(), KAFKA_BROKERS: `127.0.0.1:${kafka.port}` };
    },
    destroy,
  };
  return lab;
}
