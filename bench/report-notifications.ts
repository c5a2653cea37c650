// The report's section "Notifications: webhooks under a fixed offered rate" (bench/scenarios/notifications.ts),
// between its own markers in bench/RESULTS.md, so that `npm run bench -- --only-notifications`
// replaces it alone (and the full bench puts it back after rendering the rest).
/* eslint-disable @typescript-eslint/no-explicit-any */

const number = (value: number, digits = 0) =>
  Number.isFinite(value) ? value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : 'n/a';
const times = (value: number) => (Number.isFinite(value) ? `${number(value, 2)}×` : 'n/a');

/** One mode's scenario process: its one JSON line when it printed one (also when it failed), else why not. */
export interface NotificationsOutcome {
  readonly mode: 'embedded' | 'services';
  readonly ok: boolean;
  readonly result?: any;
  readonly error?: string;
  readonly elapsedS: number;
}

export interface NotificationsRun {
  readonly command: string;
  readonly date: string;
  readonly machine: { cores: number; cpu: string; memoryGiB: number; node: string };
  readonly quick: boolean;
  readonly outcomes: readonly NotificationsOutcome[];
}

const BEGIN = '<!-- notifications:begin (bench/report-notifications.ts; `npm run bench -- --only-notifications` rewrites this block) -->';
const END = '<!-- notifications:end -->';
export const NOTIFICATIONS_COMMAND = 'npm run bench -- --only-notifications';

const TITLE = '## Notifications: webhooks at a fixed offered rate of opens';

function method(result: any): string[] {
  const rate = result ? number(result.rate) : '5,000';
  return [
    `\`bench/scenarios/notifications.ts\` (issue 13): the real server with \`WEBHOOK_ALLOW_PRIVATE=true\`, and a webhook receiver in a process of its own`,
    '(node:http on 127.0.0.1, answering 200 once a body has arrived, checking every `Hongbao-Signature`) registered through',
    '`POST /v1/admin/webhooks` for `packet.opened` only. A sender is funded and sends lucky packets of 100 shares through the API;',
    `then the load generator (this scenario's process, an undici Pool of ${result ? number(result.connections) : 256} sockets) opens them **open loop**: open *i* is due at`,
    `start + *i* ÷ ${rate}/s, by a user of its own, on packet *i* mod ${result ? number(result.packets) : 'the number of packets'}; an open that cannot start within ${result ? number(result.lateMs) : 100} ms of its due time (every`,
    'socket busy, or the generator late) is not sent and counted as *not offered in time*. Each `claimed` answer is recorded with the',
    'time it was read; the receiver records the time each delivery\'s body had arrived (both `performance.timeOrigin + performance.now()`,',
    'their offset measured over IPC before and after the load). After the load the scenario waits, at most',
    `${result ? number(result.drainBoundS) : 60} s, until every acknowledged claim's \`packet.opened\` has arrived with its user, its amount and a valid signature;`,
    'one still missing then fails the scenario (its figures are still shown, marked failed, latencies that include a missing event as',
    'lower bounds). Duplicates (delivery is at least once) are counted. Before the measured load each server takes a warm-up at half',
    'the rate on packets of its own (and, with the webhook, its deliveries all arrive before the clock starts). The baseline is the same',
    'open-loop load, in the same run, on a fresh server with no webhook registered: there the notifier still records the events (for',
    'the live streams); only the deliveries are missing, so the ratios are what delivering webhooks costs the open path.',
    'Server CPU is the server process (all its threads) and its children, from /proc.',
  ];
}

function table(outcomes: readonly NotificationsOutcome[], cores: number): string[] {
  const withResult = outcomes.filter((outcome) => outcome.result !== undefined);
  if (withResult.length === 0) return [];
  const header = withResult.map((outcome) => (outcome.ok ? outcome.mode : `${outcome.mode} (**failed**: figures not verified)`));
  const cells = (pick: (result: any, outcome: NotificationsOutcome) => string) => withResult.map((outcome) => pick(outcome.result, outcome)).join(' | ');
  const row = (label: string, pick: (result: any) => string) => `| ${label} | ${cells(pick)} |`;
  const latency = (result: any, name: string, digits = 1) => {
    const figures = result.notifications.deliveries.latency;
    return `${figures.lowerBounds.includes(name) ? '≥ ' : ''}${number(figures[name], digits)}`;
  };
  const n = (result: any) => result.notifications;
  const b = (result: any) => result.baseline;
  const d = (result: any) => result.notifications.deliveries;
  const cpu = (entry: any) => `${number(entry.cpu.serverPercent)} %`;
  return [
    `| | ${header.join(' | ')} |`,
    `| --- | ${withResult.map(() => '---:').join(' | ')} |`,
    row('opens offered/s (due at a fixed rate, open loop)', (result) => number(result.rate)),
    row('load window s (first open due → last answer)', (result) => number(n(result).windowS, 1)),
    row('opens sent / not offered in time', (result) => `${number(n(result).opensSent)} / ${number(n(result).notOfferedInTime)}`),
    row('opens answered/s (achieved)', (result) => number(n(result).answeredPerSecond)),
    row('claims acknowledged', (result) => number(n(result).claims)),
    row('answers by state', (result) => Object.entries<number>(n(result).states).map(([state, count]) => `${state}: ${number(count)}`).join(', ')),
    row('**`packet.opened` delivered/s during the load window**', (result) => `**${number(d(result).duringLoadPerSecond)}**`),
    row('… in the second half of the load window', (result) => number(d(result).secondHalfOfLoadPerSecond)),
    row('delivered/s overall (first to last arrival)', (result) => number(d(result).overallPerSecond)),
    row('acknowledged, not yet delivered, at the end of the load', (result) => number(d(result).backlogAtLoadEnd)),
    row('last delivery, s after the load', (result) => (d(result).missing > 0 ? `— (${number(d(result).missing)} missing after ${number(result.drainBoundS)} s)` : number(d(result).lastArrivalAfterLoadS, 1))),
    row('**ack → webhook arrived, p50 / p90 / p99 ms**', (result) => `**${latency(result, 'p50Ms')} / ${latency(result, 'p90Ms')} / ${latency(result, 'p99Ms')}**`),
    row('ack → webhook arrived, p99.9 / max ms', (result) => `${latency(result, 'p999Ms')} / ${latency(result, 'maxMs')}`),
    row('duplicates (at least once) / out-of-order packets', (result) => `${number(d(result).duplicates)} / ${number(d(result).outOfOrderPackets)}`),
    row('delivered without an acknowledged answer (the answer lost)', (result) => number(d(result).deliveredWithoutAck)),
    row('baseline (no webhook): opens answered/s', (result) => number(b(result).answeredPerSecond)),
    row('open latency p50 ms: no webhook → with the webhook', (result) => `${number(b(result).openLatency.p50Ms, 1)} → ${number(n(result).openLatency.p50Ms, 1)} (${times(result.ratios.openP50)})`),
    row('open latency p99 ms: no webhook → with the webhook', (result) => `${number(b(result).openLatency.p99Ms, 1)} → ${number(n(result).openLatency.p99Ms, 1)} (${times(result.ratios.openP99)})`),
    row('open latency p99 ms from the due time (with the webhook)', (result) => number(n(result).openLatencyFromDue.p99Ms, 1)),
    row('not offered in time: no webhook / with the webhook', (result) => `${number(b(result).notOfferedInTime)} / ${number(n(result).notOfferedInTime)}`),
    row('claims/s with ÷ without the webhook', (result) => times(result.ratios.claimsPerSecond)),
    row('server CPU during the load, % of a core: no webhook / with', (result) => `${cpu(b(result))} / ${cpu(n(result))}`),
    row('server CPU while the backlog drained, % of a core', (result) => `${number(d(result).drainCpu.serverPercent)} % over ${number(d(result).drainCpu.seconds, 1)} s`),
    row('receiver / load generator CPU during the load, % of a core', (result) => `${number(n(result).cpu.receiverPercent)} % / ${number(n(result).cpu.loadGeneratorPercent)} %`),
    row(`machine busy during the load, % of a core (of ${cores * 100} %): no webhook / with`, (result) => `${number(b(result).cpu.machinePercent)} % / ${number(n(result).cpu.machinePercent)} %`),
    row('clock offset receiver − generator, ms (before / after)', (result) => `${number(n(result).clock.before?.offsetMs ?? Number.NaN, 3)} / ${number(n(result).clock.after.offsetMs, 3)}`),
    row('load average (1 min) at start', (result) => number(result.loadAverageAtStart, 2)),
    row('scenario time, s', (result) => number(result.elapsedS)),
    '',
  ];
}

function timelines(outcomes: readonly NotificationsOutcome[]): string[] {
  const lines: string[] = [];
  for (const outcome of outcomes) {
    const timeline: any[] | undefined = outcome.result?.notifications.deliveries.timeline;
    if (!timeline || timeline.length === 0) continue;
    const shown = timeline.slice(0, 40);
    lines.push(
      `Delivered per second, ${outcome.mode}, second by second from the first open due (acknowledged in the same second):`,
      `${shown.map((entry) => `${number(entry.delivered)} (${number(entry.acknowledged)})`).join(', ')}${timeline.length > shown.length ? ', …' : ''}.`,
      '',
    );
  }
  return lines;
}

/** The section between its markers: what was measured, or why a mode failed. */
export function notificationsBlock(run: NotificationsRun): string[] {
  const first = run.outcomes.find((outcome) => outcome.result !== undefined)?.result;
  const failures = run.outcomes.filter((outcome) => !outcome.ok);
  return [
    BEGIN,
    TITLE,
    '',
    ...method(first),
    '',
    `This section: \`${run.command}\` on ${run.date.slice(0, 10)} (${run.date})${run.quick ? ' (**quick mode**: a short run at a lower rate, a smoke check only)' : ''}${run.command.includes('--only-notifications') ? ", apart from the other sections' run" : ''}.`,
    `Machine: ${run.machine.cores} cores (${run.machine.cpu}), ${run.machine.memoryGiB} GiB memory, Node ${run.machine.node}. \`≥\`: a lower bound (events still on their way when the wait ended).`,
    '',
    ...table(run.outcomes, run.machine.cores),
    ...timelines(run.outcomes),
    ...(failures.length > 0
      ? [...failures.map((outcome) => `**${outcome.mode} failed** (${number(outcome.elapsedS)} s): ${outcome.error ?? 'no reason given'}.`), '']
      : []),
    END,
    '',
  ];
}

/** Before a measurement on a quiet machine: says so, and how to make one. */
export function notificationsPlaceholder(note: string): string[] {
  return [
    BEGIN,
    TITLE,
    '',
    ...method(undefined),
    '',
    `**Not measured yet.** ${note} Run \`${NOTIFICATIONS_COMMAND}\` on a quiet machine (1-minute load average below 1, \`bash scripts/services.sh up\`` +
      ' for the services mode): it writes this section and bench/notifications-results.json.',
    '',
    END,
    '',
  ];
}

/** RESULTS.md with the notifications block replaced; if it has none, put after the claims block (or before the first section). */
export function spliceNotificationsBlock(report: string, block: readonly string[]): string {
  const text = block.join('\n');
  const begin = report.indexOf(BEGIN.slice(0, 26));
  const end = report.indexOf(END);
  if (begin >= 0 && end > begin) return `${report.slice(0, begin)}${text}${report.slice(end + END.length + 1)}`;
  const claimsEnd = report.indexOf('<!-- claims:end -->\n');
  if (claimsEnd >= 0) {
    const after = claimsEnd + '<!-- claims:end -->\n'.length;
    // Keep the blank line after the claims block, then this block.
    const gap = report.startsWith('\n', after) ? after + 1 : after;
    return `${report.slice(0, gap)}${text}\n${report.slice(gap)}`;
  }
  const first = report.indexOf('\n## ');
  return first < 0 ? `${report}\n${text}` : `${report.slice(0, first + 1)}${text}\n${report.slice(first + 1)}`;
}
