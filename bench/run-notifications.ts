// Runs the notifications scenario (bench/scenarios/notifications.ts) once per mode, each in its own
// process, and writes bench/notifications-results.json and its section of bench/RESULTS.md. A mode
// that fails is reported as failed (with the figures it printed, marked as not verified) rather
// than stopping the bench: the caller decides what a failure means (--only-notifications exits 1).
// About 1½–2 minutes a mode at 5,000 opens/s for 10 s, up to ~2½ when the deliveries fall behind
// (the wait for them is bounded at 60 s).
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { notificationsBlock, spliceNotificationsBlock, type NotificationsOutcome, type NotificationsRun } from './report-notifications.js';
import { machine } from './support.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const out = (name: string) => fileURLToPath(new URL(name, import.meta.url));

function runMode(mode: 'embedded' | 'services', quick: boolean, extraArgs: readonly string[]): NotificationsOutcome {
  const started = Date.now();
  process.stderr.write(`[bench] notifications (${mode}) …\n`);
  const child = spawnSync(
    process.execPath,
    ['--import', 'tsx', 'bench/scenarios/notifications.ts', ...(mode === 'services' ? ['--services'] : []), ...(quick ? ['--quick'] : []), ...extraArgs],
    {
      cwd: ROOT,
      encoding: 'utf8',
      // Progress on the terminal; the one JSON line on stdout.
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, LOG_LEVEL: 'error', KAFKAJS_NO_PARTITIONER_WARNING: '1' },
      maxBuffer: 64 * 1024 * 1024,
      timeout: 8 * 60_000,
    },
  );
  const elapsedS = (Date.now() - started) / 1000;
  const last = (child.stdout ?? '').trim().split('\n').at(-1) ?? '';
  let result: any;
  try {
    result = JSON.parse(last);
  } catch {
    result = undefined;
  }
  const ok = child.status === 0 && result?.ok === true;
  process.stderr.write(`[bench] notifications (${mode}) ${ok ? 'done' : `failed (exit ${child.status ?? child.signal})`} in ${elapsedS.toFixed(0)} s\n`);
  if (ok) return { mode, ok, result, elapsedS };
  const error = result?.error ?? (child.error ? child.error.message : `the scenario exited with ${child.status ?? child.signal} before printing its result (its output is above)`);
  return { mode, ok: false, ...(result ? { result } : {}), error, elapsedS };
}

/** Both modes (services first: Postgres, Kafka and Redis must be up), or only `modes`. */
export function runNotifications(command: string, quick: boolean, modes: readonly ('embedded' | 'services')[] = ['services', 'embedded'], extraArgs: readonly string[] = []): NotificationsRun {
  const date = new Date().toISOString();
  const outcomes = modes.map((mode) => runMode(mode, quick, extraArgs));
  return { command, date, machine: machine(), quick, outcomes };
}

/** bench/notifications-results.json, and the section spliced into `report` (RESULTS.md's text); returns the new text. */
export function writeNotifications(run: NotificationsRun, report: string): string {
  writeFileSync(out('notifications-results.json'), `${JSON.stringify(run, null, 2)}\n`);
  return spliceNotificationsBlock(report, notificationsBlock(run));
}

export const resultsPath = out('RESULTS.md');
export const readResults = () => readFileSync(resultsPath, 'utf8');
