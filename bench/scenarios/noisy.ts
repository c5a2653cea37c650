// Scenario 5, noisy neighbour: other users open packets at a fixed offered rate on the real
// server (its own process, embedded default, default limits), first alone, then while one user
// floods grab, result pages of random ids, the wallet and the records routes from a separate
// load process. Reports the other users' open p50/p99 in both phases of the same run and the
// ratio (target: flooded p99 within 2× of the baseline p99).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { issueToken } from '../../src/http/auth.js';
import { freePort } from '../../test/support/process.js';
import { emit, quick } from '../support.js';

const SECRET = 'bench-secret';
const PHASE_S = quick ? 5 : 10;
/** Opens per second offered by the other users, the same in both phases. */
const OPENS_PER_SECOND = 500;
const VICTIM_CONNECTIONS = 32;
/** Connections of the flooding user, one phase each. */
const FLOOD_CONNECTIONS = quick ? [50] : [50, 500];
/**
 * Rounds of (baseline, each flood), interleaved: the p99 of one 10 s phase on this shared 2-core
 * machine swings by 2–4× from phase to phase, so each phase's p99 is the median over the rounds.
 */
const ROUNDS = quick ? 1 : 3;

interface Latency {
  requests: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
}

const median = (values: number[]) => [...values].sort((left, right) => left - right)[Math.floor(values.length / 2)]!;

/** One phase's figures over the rounds: requests added up, latencies the median of the rounds'. */
function medianOf(phases: Latency[]): Latency {
  return {
    requests: phases.reduce((sum, phase) => sum + phase.requests, 0),
    p50Ms: median(phases.map((phase) => phase.p50Ms)),
    p99Ms: median(phases.map((phase) => phase.p99Ms)),
    non2xx: phases.reduce((sum, phase) => sum + phase.non2xx, 0),
    errors: phases.reduce((sum, phase) => sum + phase.errors, 0),
  };
}

async function startServer(dataDir: string): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, DATA_DIR: dataDir, AUTH_SECRET: SECRET, LOG_LEVEL: 'error', PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let attempt = 0; attempt < 600; attempt += 1) {
    try {
      if ((await fetch(`${url}/readyz`)).status === 200) return { url, child };
    } catch {
      // not yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill('SIGKILL');
  throw new Error('the server did not start');
}

/** The flood, run as its own process: `noisy.ts --flood <url> <packetId> <connections> <seconds>`. */
async function flood(url: string, packetId: string, connections: number, seconds: number) {
  const token = await issueToken(SECRET, 'noisy');
  let next = 0;
  const randomId = (legacy: boolean) => `p_${randomBytes(legacy ? 12 : 24).toString('base64url')}`;
  const result = await autocannon({
    url,
    connections,
    pipelining: 1,
    duration: seconds,
    requests: [
      {
        setupRequest: (request: autocannon.Request) => {
          const paths: [string, string][] = [
            ['POST', `/v1/packets/${packetId}/grab`],
            ['GET', `/v1/packets/${randomId(false)}`],
            ['GET', `/v1/packets/${randomId(true)}`], // the old format: looked up in the database
            ['GET', '/v1/wallet'],
            ['GET', '/v1/me/sent'],
            ['GET', '/v1/me/received'],
          ];
          const [method, path] = paths[next++ % paths.length]!;
          return { ...request, method: method as 'GET' | 'POST', path, headers: { ...request.headers, authorization: `Bearer ${token}` } };
        },
      },
    ],
  });
  const statuses = Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, stats]) => [code, (stats as { count: number }).count]));
  emit({ requestsPerSecond: result.requests.average, statuses, errors: result.errors });
}

function startFlood(url: string, packetId: string, connections: number, seconds: number): { child: ChildProcess; done: Promise<any> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/scenarios/noisy.ts', '--flood', url, packetId, String(connections), String(seconds)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const done = new Promise<any>((resolve, reject) => {
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`the flood exited with ${code}`));
      else resolve(JSON.parse(output.trim().split('\n').pop()!));
    });
  });
  return { child, done };
}

async function main() {
  const dataDir = mkdtempSync(join(tmpdir(), 'hongbao-bench-noisy-'));
  const { url, child } = await startServer(dataDir);
  try {
    const admin = await issueToken(SECRET, 'bench-admin', { admin: true });
    const post = async (token: string, path: string, body: unknown, key: string) => {
      const response = await fetch(`${url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify(body),
      });
      if (response.status !== 201) throw new Error(`${path}: ${response.status} ${await response.text()}`);
      return (await response.json()) as any;
    };
    // Enough shares that every open of every phase can be a claim: 100 shares a packet.
    const phases = 1 + ROUNDS * (1 + FLOOD_CONNECTIONS.length); // warm-up, then per round a baseline and one per flood size
    const packetCount = Math.ceil((phases * OPENS_PER_SECOND * PHASE_S * 1.2) / 100);
    const senders = Math.ceil(packetCount / 50); // each sender well within their request burst
    const packets: string[] = [];
    for (let sender = 0; sender < senders; sender += 1) {
      const token = await issueToken(SECRET, `sender-${sender}`);
      await post(admin, '/v1/wallet/deposits', { userId: `sender-${sender}`, amount: '100000.00' }, `d${sender}`);
      for (let index = 0; index < 50 && packets.length < packetCount; index += 1) {
        packets.push((await post(token, '/v1/packets', { type: 'group_lucky', targetId: 'g', count: 100, amount: '100.00' }, `s${sender}-${index}`)).packet.id);
      }
    }
    const users = await Promise.all(Array.from({ length: 20_000 }, (_, index) => issueToken(SECRET, `u${index}`)));
    let next = 0;
    const victims = async (seconds: number): Promise<Latency> => {
      const result = await autocannon({
        url,
        connections: VICTIM_CONNECTIONS,
        overallRate: OPENS_PER_SECOND,
        pipelining: 1,
        duration: seconds,
        requests: [
          {
            method: 'POST',
            setupRequest: (request: autocannon.Request) => {
              const index = next++;
              // Each (packet, user) pair once; a user opens at most a few times a phase.
              request.path = `/v1/packets/${packets[Math.floor(index / 100) % packets.length]}/open`;
              request.headers = { ...request.headers, authorization: `Bearer ${users[index % users.length]}` };
              return request;
            },
          },
        ],
      });
      return { requests: result.requests.total, p50Ms: result.latency.p50, p99Ms: result.latency.p99, non2xx: result.non2xx, errors: result.errors };
    };
    await victims(PHASE_S); // warm-up
    const baselines: Latency[] = [];
    const floods = FLOOD_CONNECTIONS.map(() => ({ others: [] as Latency[], flood: [] as unknown[] }));
    for (let round = 0; round < ROUNDS; round += 1) {
      baselines.push(await victims(PHASE_S));
      for (const [index, connections] of FLOOD_CONNECTIONS.entries()) {
        const noisy = startFlood(url, packets[0]!, connections, PHASE_S + 3);
        await new Promise((resolve) => setTimeout(resolve, 1_500)); // the flood is at full strength
        floods[index]!.others.push(await victims(PHASE_S));
        floods[index]!.flood.push(await noisy.done);
      }
    }
    const baseline = medianOf(baselines);
    const flooded = FLOOD_CONNECTIONS.map((connections, index) => {
      const others = medianOf(floods[index]!.others);
      const flood = floods[index]!.flood[Math.floor(ROUNDS / 2)]!;
      return { floodConnections: connections, others, flood, p99Ratio: others.p99Ms / baseline.p99Ms, p99MsByRound: floods[index]!.others.map((phase) => phase.p99Ms) };
    });
    return { baseline: { ...baseline, p99MsByRound: baselines.map((phase) => phase.p99Ms) }, flooded };
  } finally {
    child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (process.argv.includes('--flood')) {
  const at = process.argv.indexOf('--flood');
  const [url, packetId, connections, seconds] = process.argv.slice(at + 1);
  await flood(url!, packetId!, Number(connections), Number(seconds));
} else {
  const { baseline, flooded } = await main();
  emit({
    scenario: 'noisy',
    mode: 'embedded',
    phaseS: PHASE_S,
    opensPerSecond: OPENS_PER_SECOND,
    victimConnections: VICTIM_CONNECTIONS,
    baseline,
    flooded,
    worstP99Ratio: Math.max(...flooded.map((entry) => entry.p99Ratio)),
  });
}
