// Scenario 4, http: autocannon against POST /v1/packets/:id/open over many packets and users
// on the real server (its own process, embedded default), and against a node:http server
// answering a fixed JSON body (the ceiling) with the same load settings. The load generator
// is this process; each server is a separate one.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { issueToken } from '../../src/http/auth.js';
import { freePort } from '../../test/support/process.js';
import { freshServerDatabase } from '../../test/support/server-database.js';
import { emit, median, quick } from '../support.js';

const SECRET = 'bench-secret';
/** embedded: PGlite + table log in the server process; services: Postgres server + Kafka + Redis. */
const mode = process.argv.includes('--services') ? 'services' : 'embedded';
// Enough connections that acknowledgement latency (a group commit) is not what bounds the rate.
const CONNECTIONS = Number(process.env.HTTP_CONNECTIONS ?? 256);
const DURATION_S = quick ? 3 : 10;
const RUNS = quick ? 1 : 3;

async function startProcess(args: string[], env: Record<string, string>, readyPath: string): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1' }, stdio: ['ignore', 'ignore', 'inherit'] });
  const url = `http://127.0.0.1:${port}`;
  for (let attempt = 0; attempt < 600; attempt += 1) {
    try {
      if ((await fetch(`${url}${readyPath}`)).status < 500) return { url, child };
    } catch {
      // not yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`${args.join(' ')} did not start`);
}

async function load(url: string, requests: autocannon.Request[]) {
  const result = await autocannon({ url, connections: CONNECTIONS, pipelining: 1, duration: DURATION_S, requests });
  return { requestsPerSecond: result.requests.average, p50Ms: result.latency.p50, p99Ms: result.latency.p99, non2xx: result.non2xx, errors: result.errors };
}

async function ceiling() {
  const { url, child } = await startProcess(['--import', 'tsx', 'bench/ceiling-server.ts'], {}, '/');
  try {
    await load(url, [{ method: 'POST', path: '/v1/packets/x/open' }]); // warm-up
    const runs = [];
    for (let run = 0; run < RUNS; run += 1) runs.push(await load(url, [{ method: 'POST', path: '/v1/packets/x/open' }]));
    return runs;
  } finally {
    child.kill('SIGKILL');
  }
}

async function engine() {
  const dataDir = mkdtempSync(join(tmpdir(), 'hongbao-bench-http-'));
  const server = mode === 'services' ? await freshServerDatabase(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test') : undefined;
  const services: Record<string, string> = server
    ? {
        DATABASE_URL: server.url,
        KAFKA_BROKERS: process.env.KAFKA_BROKERS ?? '127.0.0.1:9092',
        KAFKA_TOPIC: `hongbao-bench-http-${Date.now().toString(36)}`,
        REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      }
    : {};
  const { url, child } = await startProcess(
    ['--import', 'tsx', 'src/main.ts'],
    // The setup sends every packet from one sender, faster than the per-user request limit allows.
    { DATA_DIR: dataDir, AUTH_SECRET: SECRET, LOG_LEVEL: 'error', REQUESTS_BURST: '1000000', ...services },
    '/readyz',
  );
  try {
    const admin = await issueToken(SECRET, 'bench-admin', { admin: true });
    const sender = await issueToken(SECRET, 'bench-sender');
    const packetCount = quick ? 300 : 2_000;
    await fetch(`${url}/v1/wallet/deposits`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json', 'idempotency-key': 'bench' },
      body: JSON.stringify({ userId: 'bench-sender', amount: String(packetCount * 100) }),
    });
    const packets: string[] = [];
    for (let index = 0; index < packetCount; index += 1) {
      const response = await fetch(`${url}/v1/packets`, {
        method: 'POST',
        headers: { authorization: `Bearer ${sender}`, 'content-type': 'application/json', 'idempotency-key': `p${index}` },
        body: JSON.stringify({ type: 'group_lucky', targetId: 'g', count: 100, amount: '100.00' }),
      });
      packets.push(((await response.json()) as { packet: { id: string } }).packet.id);
    }
    const users = await Promise.all(Array.from({ length: 20_000 }, (_, index) => issueToken(SECRET, `u${index}`)));
    let next = 0;
    // Each request: the next (packet, user) pair, so opens spread over many packets and users.
    const requests: autocannon.Request[] = [
      {
        method: 'POST',
        setupRequest: (request: autocannon.Request) => {
          const index = next++;
          request.path = `/v1/packets/${packets[index % packets.length]}/open`;
          request.headers = { ...request.headers, authorization: `Bearer ${users[index % users.length]}` };
          return request;
        },
      },
    ];
    await load(url, requests); // warm-up
    const runs = [];
    for (let run = 0; run < RUNS; run += 1) runs.push(await load(url, requests));
    return { runs, packets: packetCount };
  } finally {
    child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
    await new Promise((resolve) => setTimeout(resolve, 500));
    await server?.drop();
  }
}

const ceilingRuns = await ceiling();
const engineResult = await engine();
const ceilingRps = median(ceilingRuns.map((run) => run.requestsPerSecond));
const engineRps = median(engineResult.runs.map((run) => run.requestsPerSecond));
emit({
  scenario: 'http',
  mode,
  connections: CONNECTIONS,
  durationS: DURATION_S,
  ceiling: { requestsPerSecond: ceilingRps, p99Ms: median(ceilingRuns.map((run) => run.p99Ms)), runs: ceilingRuns },
  open: { requestsPerSecond: engineRps, p99Ms: median(engineResult.runs.map((run) => run.p99Ms)), runs: engineResult.runs, packets: engineResult.packets },
  ratioToCeiling: engineRps / ceilingRps,
});
