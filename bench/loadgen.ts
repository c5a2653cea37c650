// The load generator of the claims scenario (bench/scenarios/claims.ts), a process of its own so
// that its CPU is not the server's: reads a work list (one open per line: path, a space, a bearer
// token), then opens with autocannon until every line is answered `claimed`. An answer that asks
// to come back (`busy`, 429, 503) or none at all (a timeout, a dropped connection) puts the line
// back for the next pass; any other answer is final and reported. Talks to its parent over IPC:
// it says 'ready' once the list is loaded, starts on 'go' (the parent's CPU clock starts then), says
// 'end' with the last answer (the clock stops), then sends the result.
//   node --import tsx bench/loadgen.ts --work <file> --url <url> [--connections 256] [--bound-s 600]
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { fenOf, percentile } from './support.js';

export interface LoadResult {
  readonly ok: boolean;
  /** Why the run failed (the time bound, answers that are neither claimed nor retryable). */
  readonly error?: string;
  readonly lines: number;
  readonly requests: number;
  /** From 'go' to the last answer. */
  readonly windowMs: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Answers by state (the body's `state`, else `http <status>`); `no answer` for timeouts and lost connections. */
  readonly states: Record<string, number>;
  readonly passes: number;
  /** Per line: the amount claimed in fen, and its seq (−1 where none). */
  readonly amountsFen: number[];
  readonly seqs: number[];
  /** Lines answered `already_claimed` (a retry of an open whose first answer was lost): the amount counts, once. */
  readonly alreadyClaimed: number;
  readonly cpuMs: number;
}

const argument = (name: string, fallback?: string) => {
  const index = process.argv.indexOf(`--${name}`);
  const value = index >= 0 ? process.argv[index + 1] : fallback;
  if (value === undefined) throw new Error(`loadgen: --${name} is required`);
  return value;
};

const RETRY = new Set(['busy', 'http 429', 'http 503', 'no answer']);

async function main(): Promise<void> {
  const url = argument('url');
  const connections = Number(argument('connections', '256'));
  const boundMs = Number(argument('bound-s', '600')) * 1000;
  const work = readFileSync(argument('work'), 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => {
      const space = line.indexOf(' ');
      return { path: line.slice(0, space), headers: { authorization: `Bearer ${line.slice(space + 1)}` } };
    });
  const amountsFen = new Array<number>(work.length).fill(-1);
  const seqs = new Array<number>(work.length).fill(-1);
  const states: Record<string, number> = {};
  const latencies: number[] = [];
  const problems: string[] = [];
  let requests = 0;
  let alreadyClaimed = 0;
  let passes = 0;
  let lastAnswerAt = 0;
  let waitMs = 0;

  await new Promise<void>((resolve) => {
    process.once('message', () => resolve());
    process.send!({ type: 'ready' });
  });
  const cpuStart = process.cpuUsage();
  const startedAt = performance.now();
  let queue = work.map((_, index) => index);

  const answer = (line: number, status: number, body: string): string => {
    let parsed: { state?: string; amount?: unknown; seq?: unknown; retryAfterMs?: unknown } = {};
    try {
      parsed = JSON.parse(body);
    } catch {
      // not JSON: named by its status below
    }
    const state = status === 200 && typeof parsed.state === 'string' ? parsed.state : `http ${status}`;
    if (state === 'busy' && typeof parsed.retryAfterMs === 'number') waitMs = Math.max(waitMs, parsed.retryAfterMs);
    if (state === 'claimed' || (state === 'already_claimed' && amountsFen[line] === -1)) {
      amountsFen[line] = fenOf(parsed.amount);
      seqs[line] = typeof parsed.seq === 'number' ? parsed.seq : -1;
      if (state === 'already_claimed') alreadyClaimed += 1;
    } else if (!RETRY.has(state) && problems.length < 5) {
      problems.push(`${work[line]!.path}: ${status} ${body.slice(0, 200)}`);
    }
    return state;
  };

  // One pass per round of retries: autocannon sends exactly `amount` requests, each taking the
  // next line of the pass, so no connection ever has to send something that is not an open.
  const overBound = () => performance.now() - startedAt > boundMs;
  while (queue.length > 0 && problems.length === 0 && !overBound()) {
    if (passes > 0) await new Promise((resolve) => setTimeout(resolve, Math.min(1_000, Math.max(10, waitMs))));
    waitMs = 0;
    passes += 1;
    const pass = queue;
    queue = [];
    const inFlight = new Set<number>();
    let next = 0;
    const tracker = autocannon(
      {
        url,
        connections: Math.min(connections, pass.length),
        pipelining: 1,
        amount: pass.length,
        sampleInt: 100, // the pass's result comes at most this long after its last answer
        requests: [
          {
            method: 'POST',
            setupRequest: (request: any, context: any) => {
              const line = pass[next++];
              // More requests than lines cannot happen with `amount`; if it ever did, a harmless read.
              if (line === undefined) return { ...request, method: 'GET', path: '/healthz' };
              context.line = line;
              inFlight.add(line);
              return { ...request, path: work[line]!.path, headers: work[line]!.headers };
            },
            onResponse: (status: number, body: string, context: any) => {
              if (context.line === undefined) return;
              const line = context.line as number;
              inFlight.delete(line);
              const state = answer(line, status, body);
              states[state] = (states[state] ?? 0) + 1;
              if (RETRY.has(state)) queue.push(line);
            },
          } as any,
        ],
      },
      () => {},
    );
    tracker.on('response', (_client: unknown, _status: number, _bytes: number, responseTime: number) => {
      requests += 1;
      latencies.push(responseTime);
      lastAnswerAt = performance.now();
    });
    const stopAtBound = setTimeout(() => tracker.stop(), Math.max(0, boundMs - (performance.now() - startedAt)));
    await new Promise((resolve) => tracker.once('done', resolve));
    clearTimeout(stopAtBound);
    for (const line of inFlight) {
      states['no answer'] = (states['no answer'] ?? 0) + 1;
      queue.push(line);
    }
  }

  const unclaimed = amountsFen.filter((amount) => amount === -1).length;
  if (unclaimed > 0 && overBound()) problems.push(`time bound of ${boundMs / 1000} s passed with ${unclaimed} of ${work.length} opens not claimed`);
  const cpu = process.cpuUsage(cpuStart);
  // At once, so the parent's CPU window closes with the load, not after the result is built and sent.
  process.send!({ type: 'end' });
  latencies.sort((left, right) => left - right);
  const result: LoadResult = {
    ok: problems.length === 0 && unclaimed === 0,
    ...(problems.length > 0 ? { error: problems.join('; ') } : {}),
    lines: work.length,
    requests,
    windowMs: lastAnswerAt - startedAt,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    states,
    passes,
    amountsFen,
    seqs,
    alreadyClaimed,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
  process.send!({ type: 'result', result }, () => process.exit(0));
}

await main();
