// npm run bench [-- --quick | --only-claims | --only-notifications]: runs every scenario, each in its own process
// (load generators apart from the servers they load), and writes bench/RESULTS.md and bench/claims-per-second.svg.
// Needs the services up (scripts/services.sh up) for Kafka, the Postgres server and Redis.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderChart } from './chart.js';
import { claimsBlock, spliceClaimsBlock, type ClaimsBaseline } from './report-claims.js';
import { renderReport, type Results } from './report.js';
import { NOTIFICATIONS_COMMAND } from './report-notifications.js';
import { readResults, resultsPath, runNotifications, writeNotifications } from './run-notifications.js';
import { machine, quick } from './support.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RUNS = quick ? 1 : 3;

function runScenario(label: string, args: string[], nodeFlags: string[] = [], timeoutMs = 20 * 60_000): any {
  const started = Date.now();
  process.stderr.write(`[bench] ${label} …`);
  const child = spawnSync(process.execPath, [...nodeFlags, '--import', 'tsx', ...args, ...(quick ? ['--quick'] : [])], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, LOG_LEVEL: 'error', KAFKAJS_NO_PARTITIONER_WARNING: '1' },
    maxBuffer: 64 * 1024 * 1024,
    timeout: timeoutMs,
  });
  const lines = child.stdout.trim().split('\n');
  if (child.status !== 0) {
    process.stderr.write(` failed (exit ${child.status})\n${child.stderr.slice(-4000)}\n`);
    throw new Error(`${label} failed: a benchmark that cannot verify its result is not reported`);
  }
  process.stderr.write(` ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  return JSON.parse(lines[lines.length - 1]!);
}

/** Every design runs the same workload RUNS times; the median run (by claims/s) is reported. */
function runDesign(design: string, args: string[]) {
  const runs = Array.from({ length: RUNS }, (_, run) => runScenario(`${design} run ${run + 1}/${RUNS}`, ['bench/baselines/cli.ts', design, ...args]));
  const sorted = [...runs].sort((left, right) => left.claimsPerSecond - right.claimsPerSecond);
  return { ...sorted[Math.floor(sorted.length / 2)], runs: runs.map((run) => run.claimsPerSecond) };
}

const workloadArgs = quick ? ['--packets', '100', '--openers', '120', '--concurrency', '256'] : ['--packets', '1000', '--openers', '120', '--concurrency', '256'];
const designs = ['hongbao', 'hongbao-table', 'hongbao-kafka', 'redis-lua', 'pg-lock', 'pg-cas'];

const baselinePath = fileURLToPath(new URL('claims-baseline.json', import.meta.url));
const claimsBaseline = existsSync(baselinePath) ? (JSON.parse(readFileSync(baselinePath, 'utf8')) as ClaimsBaseline) : undefined;
const out = (name: string) => fileURLToPath(new URL(name, import.meta.url));
// The headline; each mode ends with a profiled pass that is not measured.
const runClaims = () => [runScenario('claims end to end (services)', ['bench/scenarios/claims.ts', '--services', '--profile']), runScenario('claims end to end (embedded)', ['bench/scenarios/claims.ts', '--profile'])];

if (process.argv.includes('--only-notifications')) {
  // `npm run bench -- --only-notifications`: webhooks at 5,000 opens/s offered (bench/scenarios/notifications.ts),
  // services then embedded, ~3–5 minutes; written in place of its own section, the others keep theirs.
  const run = runNotifications(`${NOTIFICATIONS_COMMAND}${quick ? ' --quick' : ''}`, quick);
  writeFileSync(resultsPath, writeNotifications(run, readResults()));
  process.stderr.write('[bench] wrote the notifications section of bench/RESULTS.md and bench/notifications-results.json\n');
  if (run.outcomes.some((outcome) => !outcome.ok)) process.exitCode = 1;
} else if (process.argv.includes('--only-claims')) {
  // `npm run bench -- --only-claims`: the end-to-end section alone (~10 minutes instead of the whole
  // bench), written in place of the one RESULTS.md holds; the other sections keep their own run.
  const claims = runClaims();
  const date = new Date().toISOString();
  writeFileSync(out('claims-results.json'), `${JSON.stringify({ command: 'npm run bench -- --only-claims', date, machine: machine(), claims, claimsBaseline }, null, 2)}\n`);
  const section = claimsBlock(claims, claimsBaseline, `\`npm run bench -- --only-claims\` on ${date.slice(0, 10)} (${date}), apart from the other sections' run`);
  writeFileSync(out('RESULTS.md'), spliceClaimsBlock(readFileSync(out('RESULTS.md'), 'utf8'), section));
  process.stderr.write('[bench] wrote the end-to-end section of bench/RESULTS.md and bench/claims-results.json\n');
} else {
  const results: Results = {
    command: `npm run bench${quick ? ' -- --quick' : ''}`,
    date: new Date().toISOString(),
    machine: machine(),
    quick,
    // First while the machine is freshest.
    claims: runClaims(),
    ...(claimsBaseline ? { claimsBaseline } : {}),
    engine: runScenario('engine', ['bench/scenarios/engine.ts']),
    memory: runScenario('memory', ['bench/scenarios/memory.ts'], ['--expose-gc']),
    durable: [runScenario('durable (table)', ['bench/scenarios/durable.ts', '--log', 'table']), runScenario('durable (kafka)', ['bench/scenarios/durable.ts', '--log', 'kafka']), runScenario('durable (kafka, fenced slots)', ['bench/scenarios/durable.ts', '--log', 'kafka-slots'])],
    ledger: runScenario('ledger', ['bench/scenarios/ledger.ts']),
    http: [runScenario('http (services)', ['bench/scenarios/http.ts', '--services']), runScenario('http (embedded)', ['bench/scenarios/http.ts'])],
    noisy: runScenario('noisy neighbour', ['bench/scenarios/noisy.ts']),
    // About 9 minutes; a stage disturbed by other work on the machine is run again (up to 3 times).
    clusterHttp: runScenario('cluster http (1 vs 2 nodes)', ['bench/scenarios/cluster-http.ts'], [], 45 * 60_000),
    failover: runScenario('failover (kill -9 of a node)', ['bench/scenarios/failover.ts']),
    designs: Object.fromEntries(designs.map((design) => [design, runDesign(design, workloadArgs)])),
  };
  // Last: a failed mode is reported in its section, not a reason to lose the others.
  const notifications = runNotifications(results.command, quick);
  // The raw figures too, so the report can be read (and re-rendered) without running again.
  writeFileSync(out('results.json'), `${JSON.stringify({ ...results, notifications }, null, 2)}\n`);
  writeFileSync(out('RESULTS.md'), writeNotifications(notifications, renderReport(results)));
  writeFileSync(out('claims-per-second.svg'), renderChart(results));
  process.stderr.write('[bench] wrote bench/RESULTS.md and bench/claims-per-second.svg\n');
}
