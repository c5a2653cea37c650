// Shared bench helpers: seeded PRNG, percentiles, the machine, one-line JSON results.
import { cpus, totalmem } from 'node:os';

/** mulberry32, the same generator the simulations use: every run offers the same load. */
export { seededRandom } from '../test/support/seeded-random.js';

export function percentile(sorted: readonly number[], fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((left, right) => left - right);
  return percentile(sorted, 0.5);
}

export function machine() {
  return { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version };
}

export const quick = process.argv.includes('--quick');

/** Scenario processes print exactly one JSON line; the orchestrator reads it. */
export function emit(result: object): void {
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

export function argument(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? Number(process.argv[index + 1]) : fallback;
}

/** "12.34" → 1234 fen; anything the API could not have written → NaN. */
export function fenOf(yuan: unknown): number {
  const match = typeof yuan === 'string' ? /^(\d+)\.(\d{2})$/.exec(yuan) : null;
  return match ? Number(match[1]) * 100 + Number(match[2]) : Number.NaN;
}
