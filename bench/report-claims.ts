// The report's headline section, "End to end: a new user per open" (bench/scenarios/claims.ts),
// and its rows in the targets table; each mode beside today's figure, measured before issue 11
// (bench/claims-baseline.json).
/* eslint-disable @typescript-eslint/no-explicit-any */

const number = (value: number, digits = 0) =>
  Number.isFinite(value) ? value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : 'n/a';
const times = (value: number) => (Number.isFinite(value) ? `${number(value, 2)}×` : 'n/a');
const percent = (value: number) => `${number(value * 100)} %`;
const met = (ok: boolean) => (ok ? 'met' : '**missed**');

/** bench/claims-baseline.json: the scenario's output per mode on the code before issue 11. */
export interface ClaimsBaseline {
  readonly measuredAt: string;
  readonly commit: string;
  readonly embedded?: any;
  readonly services?: any;
}

export const CLAIMS_TARGETS = { ratioToCeiling: 0.75, p99Ms: 100, cpuPerClaimVsBaseline: 0.5 };

const servicesTotal = (result: any) => result?.hongbao.servicesCpuUsPerClaim?.total ?? Number.NaN;
const states = (result: any) =>
  Object.entries<number>(result?.hongbao.states ?? {})
    .map(([state, count]) => `${state}: ${number(count)}`)
    .join(', ') || 'n/a';

/** The load generator's own CPU: near 100 % it, not the server, bounds the rate. */
const loadGenerator = (result: any) => `${number(result.ceiling.loadGeneratorCpuPercent)} / ${number(result.hongbao.loadGeneratorCpuPercent)}`;

const bookedAfter = (result: any) => {
  const waits: number[] = (result.hongbao.runs ?? []).map((run: any) => run.verification?.bookedAfterMs).filter((ms: unknown) => typeof ms === 'number');
  return waits.length === 0 ? 'n/a' : waits.map((ms) => number(ms / 1000, 1)).join(', ');
};

function modeTable(result: any, before: any): string[] {
  const row = (label: string, pick: (entry: any) => number, digits = 0, compare = true) => {
    const now = pick(result);
    const then = before ? pick(before) : Number.NaN;
    return `| ${label} | ${number(now, digits)} | ${before ? number(then, digits) : '—'} | ${compare && before ? times(now / then) : '—'} |`;
  };
  const services = result.mode === 'services';
  return [
    `### ${result.mode}`,
    '',
    `| | this run | today's figure (before issue 11) | this ÷ before |`,
    '| --- | ---: | ---: | ---: |',
    row('ceiling (node:http) requests/s', (entry) => entry.ceiling.requestsPerSecond),
    row('hongbao requests/s', (entry) => entry.hongbao.requestsPerSecond),
    row('hongbao claims/s', (entry) => entry.hongbao.claimsPerSecond),
    `| hongbao ÷ ceiling | ${percent(result.ratioToCeiling)} | ${before ? percent(before.ratioToCeiling) : '—'} | — |`,
    row('p50 ms', (entry) => entry.hongbao.p50Ms, 1),
    row('p99 ms', (entry) => entry.hongbao.p99Ms, 1),
    row('**server CPU µs per claimed open**', (entry) => entry.hongbao.serverCpuUsPerClaim),
    row('server CPU µs per request', (entry) => entry.hongbao.serverCpuUsPerRequest),
    ...(services
      ? [
          row('services CPU µs per claim (Postgres + Kafka + Redis)', servicesTotal),
          row('… Postgres', (entry) => entry.hongbao.servicesCpuUsPerClaim?.postgres ?? Number.NaN),
          row('… Kafka', (entry) => entry.hongbao.servicesCpuUsPerClaim?.kafka ?? Number.NaN),
          row('… Redis', (entry) => entry.hongbao.servicesCpuUsPerClaim?.redis ?? Number.NaN),
        ]
      : []),
    row('ceiling server CPU µs per request', (entry) => entry.ceiling.serverCpuUsPerRequest, 1),
    `| load generator CPU, % of a core (ceiling / hongbao) | ${loadGenerator(result)} | ${before ? loadGenerator(before) : '—'} | — |`,
    `| answers by state (all runs) | ${states(result)} | ${before ? states(before) : '—'} | — |`,
    `| other work on the machine during hongbao's load, % of a core | ${number(result.hongbao.otherCpuPercent)} | ${before ? number(before.hongbao.otherCpuPercent) : '—'} | — |`,
    `| verified: all booked, s after the load (wallet checks included) | ${bookedAfter(result)} | ${before ? bookedAfter(before) : '—'} | — |`,
    `| load average (1 min) at start | ${number(result.loadAverageAtStart, 2)} | ${before ? number(before.loadAverageAtStart, 2) : '—'} | — |`,
    '',
    // The ceiling is worth as much as the client that measures it: a saturated load generator caps it.
    ...(result.ceiling.loadGeneratorCpuPercent >= 90
      ? [
          `The ceiling is bound by the load generator (${number(result.ceiling.loadGeneratorCpuPercent)} % of a core: one event loop plus its GC threads), not by node:http`,
          `(${number((result.ceiling.serverCpuUsPerRequest * result.ceiling.requestsPerSecond) / 1e4)} % of a core): ${percent(CLAIMS_TARGETS.ratioToCeiling)} of it is ${number(CLAIMS_TARGETS.ratioToCeiling * result.ceiling.requestsPerSecond)} requests/s with this client.`,
          '',
        ]
      : []),
  ];
}

function profileTable(results: any[]): string[] {
  const profiled = results.filter((result) => result.profile);
  if (profiled.length === 0) return [];
  const main = (result: any) => result.profile.threads.find((thread: any) => thread.thread === 'main');
  const rows = Math.max(...profiled.map((result) => main(result)?.top.length ?? 0));
  const lines = [
    `Where the server's main thread spends the load window (self time by category, \`node --cpu-prof\` in a separate pass after the measured`,
    'runs, so the figures above are not slowed by the profiler; shares only):',
    '',
    `| # | ${profiled.map((result) => `${result.mode} | share`).join(' | ')} |`,
    `| ---: | ${profiled.map(() => '--- | ---:').join(' | ')} |`,
  ];
  for (let index = 0; index < rows; index += 1) {
    const cells = profiled.map((result) => {
      const entry = main(result)?.top[index];
      return entry ? `${entry.category} | ${percent(entry.share)}` : ' | ';
    });
    lines.push(`| ${index + 1} | ${cells.join(' | ')} |`);
  }
  for (const result of profiled) {
    const functions = main(result)?.functions ?? [];
    if (functions.length > 0) lines.push('', `Heaviest functions, ${result.mode} (self time): ${functions.slice(0, 8).map((entry: any) => `${entry.name} ${percent(entry.share)}`).join(', ')}.`);
  }
  const workers = profiled.flatMap((result) =>
    result.profile.threads
      .filter((thread: any) => thread.thread !== 'main')
      .map((thread: any) => `${result.mode} ${thread.thread}: ${thread.top.slice(0, 3).map((entry: any) => `${entry.category} ${percent(entry.share)}`).join(', ')}`),
  );
  if (workers.length > 0) lines.push('', `Other threads (their own profile files): ${workers.join('; ')}.`);
  lines.push('');
  return lines;
}

export function renderClaimsSection(results: any[], baseline?: ClaimsBaseline): string[] {
  const first = results[0];
  if (first === undefined) return [];
  return [
    '## End to end: a new user per open',
    '',
    `\`bench/scenarios/claims.ts\`: ${number(first.packets)} lucky packets × ${first.sharesPerPacket} shares sent through the API, ${number(first.users)} users whose`,
    `tokens are minted before the clock; a load generator in its own process (autocannon, ${first.connections} connections, pipelining ${first.pipelining})`,
    'opens each (packet, user) pair once, round robin over the packets, until every share is claimed (`busy`, 429 and 503',
    'answers are put back and opened again later). The same client, settings and number of requests against bare node:http',
    `answering a fixed body (the ceiling), alternately in ${first.runs} round${first.runs === 1 ? '' : 's'}, medians. ${number(first.warmupPackets)} packets are opened first by other users on every`,
    'server (warm-up, not measured). Every hongbao run is verified or the bench fails: each packet\'s result page lists exactly the',
    'claimed answers (seqs 1…100, Σ 100.00), every user\'s wallet holds exactly the sum of their answers with nothing pending, the',
    'sender has spent it all, reconciliation is clean. Server CPU is the server process (all its threads) and its children over',
    'the load window, from /proc; services CPU is Postgres (the server\'s processes and the run\'s backends), Kafka\'s JVM and',
    'redis-server over the same window. Embedded: PGlite and the table log in the server process; services: the Postgres server,',
    'Kafka and Redis.',
    ...(baseline ? [`Today's figure (before issue 11): measured on commit ${baseline.commit.slice(0, 10)} on ${baseline.measuredAt.slice(0, 10)} with the same scenario (bench/claims-baseline.json).`] : []),
    '',
    ...results.flatMap((result) => modeTable(result, baseline?.[result.mode as 'embedded' | 'services'])),
    ...profileTable(results),
  ];
}

/** Rows for the targets table: reported as met or missed, never asserted. */
export function claimsTargetRows(results: any[], baseline?: ClaimsBaseline): string[] {
  const rows: string[] = [];
  for (const result of results) {
    rows.push(
      `| end to end, ${result.mode} | ≥ ${percent(CLAIMS_TARGETS.ratioToCeiling)} of the node:http ceiling's requests/s | ${percent(result.ratioToCeiling)} (${number(result.hongbao.requestsPerSecond)} vs ${number(result.ceiling.requestsPerSecond)} req/s) | ${met(result.ratioToCeiling >= CLAIMS_TARGETS.ratioToCeiling)} |`,
      `| end to end, ${result.mode} | p99 ≤ ${CLAIMS_TARGETS.p99Ms} ms | ${number(result.hongbao.p99Ms, 1)} ms | ${met(result.hongbao.p99Ms <= CLAIMS_TARGETS.p99Ms)} |`,
    );
    const before = baseline?.[result.mode as 'embedded' | 'services'];
    const cpuRatio = before ? result.hongbao.serverCpuUsPerClaim / before.hongbao.serverCpuUsPerClaim : Number.NaN;
    rows.push(
      `| end to end, ${result.mode} | server CPU per claimed open ≤ ${CLAIMS_TARGETS.cpuPerClaimVsBaseline}× today's figure (before issue 11) | ${number(result.hongbao.serverCpuUsPerClaim)} µs vs ${before ? number(before.hongbao.serverCpuUsPerClaim) : 'n/a'} µs: ${times(cpuRatio)} | ${met(cpuRatio <= CLAIMS_TARGETS.cpuPerClaimVsBaseline)} |`,
    );
  }
  return rows;
}

/**
 * What bounds the end-to-end rate, from the run's own figures: the CPU one claim costs everything on
 * this machine (the server's threads, the load generator, and in services mode Postgres, Kafka and
 * Redis) against the cores there are, and the share of the server's main thread left idle.
 */
function boundsText(results: any[], cores: number): string[] {
  const lines = ['**What bounds it.**', ''];
  for (const result of results) {
    const loadGeneratorUs = (result.hongbao.loadGeneratorCpuPercent / 100) * (1e6 / result.hongbao.requestsPerSecond);
    const services = result.mode === 'services' ? servicesTotal(result) : 0;
    const perClaim = result.hongbao.serverCpuUsPerClaim + loadGeneratorUs + services;
    const cpuBound = (cores * 1e6) / perClaim;
    const main = result.profile?.threads.find((thread: any) => thread.thread === 'main');
    const idle = main?.top.find((entry: any) => entry.category === '(idle)')?.share;
    const storage = result.profile?.threads
      .filter((thread: any) => thread.thread !== 'main')
      .map((thread: any) => ({ thread: thread.thread, busy: 1 - (thread.top.find((entry: any) => entry.category === '(idle)')?.share ?? 0) }))
      .sort((left: any, right: any) => right.busy - left.busy)[0];
    lines.push(
      `- **${result.mode}**: one claim costs ${number(result.hongbao.serverCpuUsPerClaim)} µs of the server's CPU, ${number(loadGeneratorUs)} µs of the load generator's` +
        (services > 0 ? ` and ${number(services)} µs of Postgres, Kafka and Redis` : '') +
        ` (node:http: ${number(result.ceiling.serverCpuUsPerRequest, 1)} µs a request). On ${cores} cores that is at most ${number(cpuBound)} claims/s with every core busy,` +
        ` ${percent(cpuBound / result.ceiling.requestsPerSecond)} of this ceiling` +
        (cpuBound / result.ceiling.requestsPerSecond < CLAIMS_TARGETS.ratioToCeiling
          ? `: ${percent(CLAIMS_TARGETS.ratioToCeiling)} is out of reach at this cost per claim (a claim decided, made durable and booked in a double-entry ledger, all on these cores).`
          : ': the cores would allow the target; what is missing is waiting (opens in flight ÷ latency).') +
        (idle !== undefined ? ` In the profiled pass the main thread (HTTP and the engine) was idle ${percent(idle)} of the load window` : '') +
        (storage !== undefined && result.mode === 'embedded' ? `; the storage thread (PGlite: the table log and the ledger) was busy ${percent(storage.busy)}` : '') +
        (idle !== undefined ? '.' : ''),
    );
  }
  lines.push('');
  return lines;
}

const BEGIN = '<!-- claims:begin (bench/report-claims.ts; `npm run bench -- --only-claims` rewrites this block) -->';
const END = '<!-- claims:end -->';

/** The section with its targets and bounds, between markers so that a run of the claims alone can replace it. */
export function claimsBlock(results: any[], baseline: ClaimsBaseline | undefined, provenance?: string): string[] {
  if (results.length === 0) return [];
  return [
    BEGIN,
    ...renderClaimsSection(results, baseline),
    ...(provenance ? [`This section: ${provenance}.`, ''] : []),
    '| target | goal | this run | |',
    '| --- | --- | --- | --- |',
    ...claimsTargetRows(results, baseline),
    '',
    ...boundsText(results, 2),
    END,
    '',
  ];
}

/** RESULTS.md with its claims block replaced (or, if it has none, put before the first section). */
export function spliceClaimsBlock(report: string, block: readonly string[]): string {
  const text = block.join('\n');
  const begin = report.indexOf(BEGIN.slice(0, 20));
  const end = report.indexOf(END);
  if (begin >= 0 && end > begin) return `${report.slice(0, begin)}${text}${report.slice(end + END.length + 1)}`;
  const first = report.indexOf('\n## ');
  return first < 0 ? `${report}\n${text}` : `${report.slice(0, first + 1)}${text}\n${report.slice(first + 1)}`;
}
