// One baseline run in its own process, for the benchmark orchestrator:
//
//   npx tsx bench/baselines/cli.ts <redis-lua|pg-lock|pg-cas> [--packets N] [--openers M]
//       [--concurrency C] [--shares S] [--total FEN] [--live K] [--retries R] [--warmup W]
//       [--seed-secret S] [--quick]
//
// An untimed, verified warm-up on W other packets (default 50; 0: none) → setup (untimed) →
// the timed run: `concurrency` opens in flight until the schedule is done → verification of
// what the store holds → cleanup. Prints exactly one JSON line (BaselineResult)
// on stdout; anything else goes to stderr. Exits 1 if the run failed or was rejected.
import { percentile, quick } from '../support.js';
import { hongbao } from './hongbao.js';
import { pgCas } from './pg-cas.js';
import { pgLock } from './pg-lock.js';
import { redisLua } from './redis-lua.js';
import { type BaselineResult, type Claim, type Design, type Open, type Outcome, type Workload, openSchedule, verify, verifyObserved } from './workload.js';

function option(name: string): string | undefined {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? process.argv[index + 1] : undefined;
}

function count(name: string, fallback: number): number {
  const raw = option(name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer, got ${raw}`);
  return value;
}

const designs: Record<string, (workload: Workload) => Design> = {
  'redis-lua': (workload) => redisLua(workload),
  'pg-lock': (workload) => pgLock(workload),
  'pg-cas': (workload) => pgCas(workload, count('retries', 50)),
  hongbao: (workload) => hongbao(workload, 'memory'),
  'hongbao-table': (workload) => hongbao(workload, 'table'),
  'hongbao-kafka': (workload) => hongbao(workload, 'kafka'),
};

/** Keeps `concurrency` opens in flight (closed loop) and times each from call to answer. */
async function drive(design: Design, schedule: readonly Open[], concurrency: number) {
  const latencies = new Float64Array(schedule.length);
  const observed: Claim[] = [];
  const outcomes: Record<Outcome['kind'], number> = { claimed: 0, already: 0, sold_out: 0, busy: 0 };
  let next = 0;
  let failure: unknown;
  async function worker(): Promise<void> {
    for (let index = next++; index < schedule.length; index = next++) {
      const open = schedule[index]!;
      const started = performance.now();
      try {
        const outcome = await design.open(open);
        latencies[index] = performance.now() - started;
        outcomes[outcome.kind] += 1;
        if (outcome.kind === 'claimed') observed.push({ ...open, amountFen: outcome.amountFen });
      } catch (error) {
        // Stop handing out opens and let the ones in flight finish, so cleanup runs on a quiet store.
        failure ??= error;
        next = schedule.length;
      }
    }
  }
  const started = performance.now();
  await Promise.all(Array.from({ length: Math.min(concurrency, schedule.length) }, worker));
  if (failure !== undefined) throw failure;
  return { elapsedMs: performance.now() - started, latencies: Array.from(latencies).sort((a, b) => a - b), observed, outcomes };
}

/** One design instance through setup → timed run → verification → cleanup. */
async function runOnce(create: (workload: Workload) => Design, workload: Workload) {
  const schedule = openSchedule(workload);
  const design = create(workload);
  try {
    await design.setup();
    const run = await drive(design, schedule, workload.concurrency);
    const stored = await design.storedClaims();
    verify(stored, workload);
    verifyObserved(run.observed, stored);
    return { name: design.name, opens: schedule.length, ...run, extra: await design.extra() };
  } finally {
    // A failed cleanup is reported but never hides why the run itself failed.
    await design.cleanup().catch((error: unknown) => process.stderr.write(`cleanup failed: ${String(error)}\n`));
  }
}

async function main(): Promise<BaselineResult> {
  const name = process.argv[2] ?? '';
  const create = designs[name];
  if (create === undefined) throw new Error(`usage: cli.ts <${Object.keys(designs).join('|')}> [--packets N] [--openers M] [--concurrency C] [--quick]`);
  const workload: Workload = {
    packets: count('packets', quick ? 20 : 200),
    sharesPerPacket: count('shares', 100),
    openersPerPacket: count('openers', 120),
    totalFen: count('total', 10_000),
    concurrency: count('concurrency', 64),
    seedSecret: option('seed-secret') ?? 'bench',
    ...(option('live') === undefined ? {} : { livePackets: count('live', 1) }),
  };
  if (workload.openersPerPacket < workload.sharesPerPacket) throw new Error('--openers must be at least --shares, or no packet sells out');
  // An untimed warm-up on other packets first (verified all the same), so the timed run measures
  // the design and not V8 compiling the client library: a one-second Redis run is mostly warm-up.
  const warmup = option('warmup') === '0' ? 0 : count('warmup', quick ? 5 : 50);
  if (warmup > 0) await runOnce(create, { ...workload, packets: warmup, seedSecret: `${workload.seedSecret}:warmup` });
  const run = await runOnce(create, workload);
  const claims = run.outcomes.claimed;
  return {
    design: run.name,
    opens: run.opens,
    claims,
    elapsedMs: round(run.elapsedMs),
    claimsPerSecond: Math.round((claims / run.elapsedMs) * 1000),
    opensPerSecond: Math.round((run.opens / run.elapsedMs) * 1000),
    latencyMs: { p50: round(percentile(run.latencies, 0.5)), p99: round(percentile(run.latencies, 0.99)) },
    verified: true,
    workload,
    warmupPackets: warmup,
    outcomes: run.outcomes,
    ...run.extra,
  };
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

try {
  process.stdout.write(`${JSON.stringify(await main())}\n`);
} catch (error) {
  process.stderr.write(`baseline ${process.argv[2] ?? ''} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
}
