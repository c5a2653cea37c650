// Scenario 2, durable: opens through the engine until the real event log acknowledged them.
// `--log table` (embedded: the table log in PGlite on disk), `--log kafka` (acks=all,
// idempotent producer, one producer for every partition) or `--log kafka-slots` (what services
// mode runs: one fenced transactional producer per owned slot, one transaction per group
// commit of a slot; the cost of the fence is the gap between the two Kafka runs). Reports acknowledged claims/s at saturation, and p50/p99/p999
// acknowledgement latency at fixed offered loads (open loop: opens are issued on a timer
// whether or not earlier ones have finished, so queueing shows up in the latency).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { openKafkaLog } from '../../src/app/open-kafka-log.js';
import { DEFAULT_LIMITS } from '../../src/domain/limits.js';
import type { Packet } from '../../src/domain/packet.js';
import { packetSeed } from '../../src/domain/random.js';
import { Engine } from '../../src/engine/engine.js';
import { openDatabase } from '../../src/ledger/database.js';
import type { EventLog } from '../../src/log/event-log.js';
import { GroupCommitter, type Committer } from '../../src/log/group-commit.js';
import type { KafkaLog } from '../../src/log/kafka-log.js';
import { kafkaSlotProducers } from '../../src/log/kafka-slot-producer.js';
import { SlotCommitters } from '../../src/log/slot-committers.js';
import { SlotWriters } from '../../src/log/slot-writers.js';
import { TableLog } from '../../src/log/table-log.js';
import { emit, percentile, quick } from '../support.js';

const logKind = process.argv.includes('--log') ? process.argv[process.argv.indexOf('--log') + 1]! : 'table';

async function openLog(): Promise<{ log: EventLog; close: () => Promise<void> }> {
  if (logKind === 'kafka' || logKind === 'kafka-slots') {
    const suffix = `${Date.now().toString(36)}-${process.pid}`;
    const log = await openKafkaLog(
      { brokers: (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(','), topic: `hongbao-bench-${suffix}`, partitions: 8, clientId: 'hongbao-bench' },
      pino({ level: 'error' }),
    );
    return { log, close: () => log.close() };
  }
  const dataDir = mkdtempSync(join(tmpdir(), 'hongbao-bench-'));
  const database = await openDatabase({ dataDir });
  return {
    log: new TableLog(database.db),
    close: async () => {
      await database.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const { log, close: closeLog } = await openLog();

/** Every slot owned by this process, each through its own fenced producer (a fresh topic: nothing to catch up). */
async function slotCommitters(kafkaLog: KafkaLog): Promise<{ committer: Committer; close: () => Promise<void> }> {
  const writers = new SlotWriters(kafkaSlotProducers({ brokers: kafkaLog.brokers, clientId: 'hongbao-bench', topic: kafkaLog.topic, logger: pino({ level: 'error' }) }), {
    catchUp: async () => {},
    onLost: () => {},
  });
  writers.assign(Array.from({ length: kafkaLog.partitionCount }, (_, slot) => slot));
  await Promise.all(writers.assignedSlots().map((slot) => writers.ready(slot)));
  return { committer: new SlotCommitters((packetId) => kafkaLog.partitionOf(packetId), writers, kafkaLog.name), close: () => writers.close() };
}

const slots = logKind === 'kafka-slots' ? await slotCommitters(log as KafkaLog) : undefined;
const committer: Committer = slots?.committer ?? new GroupCommitter(log);
const close = async () => {
  await slots?.close();
  await closeLog();
};
let nowMs = Date.now();
const engine = new Engine({
  limits: DEFAULT_LIMITS,
  clock: { now: () => nowMs },
  seedFor: (packetId) => packetSeed('bench', packetId),
  source: { load: async () => null },
  commit: (event, onFailure) => committer.submit(event, onFailure),
});

let packetCounter = 0;
let userCounter = 0;
/** A stream of (packet, fresh user) pairs over live packets: every open is a claim. */
let current: string[] = [];
let cursor = 0;
function nextOpen(): [string, string] {
  if (cursor >= current.length * 100 || current.length === 0) {
    current = [];
    for (let index = 0; index < 100; index += 1) {
      const packet: Packet = {
        id: `b${packetCounter++}`, type: 'group_lucky', senderId: 's', targetId: 'g', count: 100, totalFen: 10_000,
        greeting: '', members: null, createdAtMs: nowMs, liveAtMs: nowMs, expiresAtMs: nowMs + 86_400_000,
      };
      engine.adopt({ packet, claims: [], expired: false });
      current.push(packet.id);
    }
    cursor = 0;
  }
  const packetId = current[cursor % current.length]!;
  cursor += 1;
  return [packetId, `u${userCounter++}`];
}

async function saturation(seconds: number, inFlight: number): Promise<number> {
  let claimed = 0;
  const deadline = performance.now() + seconds * 1000;
  const worker = async () => {
    while (performance.now() < deadline) {
      const [packetId, userId] = nextOpen();
      const outcome = await engine.open(packetId, userId);
      if (outcome.state === 'claimed') claimed += 1;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: inFlight }, worker));
  return (claimed / (performance.now() - started)) * 1000;
}

async function offered(ratePerSecond: number, seconds: number) {
  const latencies: number[] = [];
  let failed = 0;
  const pending: Promise<void>[] = [];
  const started = performance.now();
  let issued = 0;
  const total = ratePerSecond * seconds;
  while (issued < total) {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * ratePerSecond));
    for (; issued < due; issued += 1) {
      const [packetId, userId] = nextOpen();
      const issuedAt = performance.now();
      pending.push(
        engine.open(packetId, userId).then(
          (outcome) => {
            if (outcome.state === 'claimed') latencies.push(performance.now() - issuedAt);
            else failed += 1;
          },
          () => {
            failed += 1;
          },
        ),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
    nowMs = Date.now();
  }
  await Promise.all(pending);
  latencies.sort((left, right) => left - right);
  return {
    offeredPerSecond: ratePerSecond,
    achievedPerSecond: (latencies.length / (performance.now() - started)) * 1000,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    p999Ms: percentile(latencies, 0.999),
    failed,
  };
}

await saturation(1, 2_000); // warm-up
const saturationRuns = [];
for (let run = 0; run < (quick ? 1 : 3); run += 1) saturationRuns.push(await saturation(quick ? 2 : 5, 5_000));
const latency = [];
for (const rate of [5_000, 20_000, 50_000]) latency.push(await offered(rate, quick ? 2 : 5));
const sorted = [...saturationRuns].sort((left, right) => left - right);
emit({
  scenario: 'durable',
  log: logKind,
  saturation: { claimsPerSecond: percentile(sorted, 0.5), runs: saturationRuns, inFlight: 5_000 },
  latency,
  appends: committer.stats.appends,
  eventsPerAppend: committer.stats.events / Math.max(1, committer.stats.appends),
});
await close();
