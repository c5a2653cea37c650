// The engine itself as a "design" of the same workload, so it is measured and verified
// exactly like the baselines: `memory` decides in memory only (what "decided claims/s" means
// for the engine); `table` and `kafka` answer only once the real event log acknowledged the
// claim (group commit). Stored claims are read back from the log, the engine's durable truth.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { openKafkaLog } from '../../src/app/open-kafka-log.js';
import { packetSeed } from '../../src/domain/random.js';
import { Engine } from '../../src/engine/engine.js';
import { openDatabase } from '../../src/ledger/database.js';
import type { EventLog } from '../../src/log/event-log.js';
import { GroupCommitter } from '../../src/log/group-commit.js';
import { MemoryLog } from '../../src/log/memory-log.js';
import { TableLog } from '../../src/log/table-log.js';
import { LIMITS, packetIds, type Claim, type Design, type Open, type Outcome, type Workload } from './workload.js';

export type EngineLog = 'memory' | 'table' | 'kafka';

export function hongbao(workload: Workload, logKind: EngineLog): Design {
  let log: EventLog | undefined;
  let committer: GroupCommitter | undefined;
  let engine: Engine | undefined;
  let close: () => Promise<void> = async () => {};
  const nowMs = Date.now();

  return {
    name: logKind === 'memory' ? 'hongbao' : `hongbao-${logKind}`,
    async setup() {
      if (logKind === 'table') {
        const dataDir = mkdtempSync(join(tmpdir(), 'hongbao-design-'));
        const database = await openDatabase({ dataDir });
        log = new TableLog(database.db);
        close = async () => {
          await database.close();
          rmSync(dataDir, { recursive: true, force: true });
        };
      } else if (logKind === 'kafka') {
        const suffix = `${Date.now().toString(36)}-${process.pid}`;
        const kafka = await openKafkaLog(
          { brokers: (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(','), topic: `hongbao-design-${suffix}`, partitions: 8, clientId: 'hongbao-design' },
          pino({ level: 'error' }),
        );
        log = kafka;
        close = () => kafka.close();
      } else {
        log = new MemoryLog();
      }
      const durable = logKind !== 'memory';
      committer = new GroupCommitter(log);
      const acknowledged = Promise.resolve();
      engine = new Engine({
        limits: LIMITS,
        clock: { now: () => nowMs },
        seedFor: (packetId) => packetSeed(workload.seedSecret, packetId),
        source: { load: async () => null },
        // In memory the decision is the answer; the events still go to a log for read-back.
        commit: durable ? (event, onFailure) => committer!.submit(event, onFailure) : (event) => (void (log as MemoryLog).events.push(event), acknowledged),
      });
      for (const packetId of packetIds(workload)) {
        engine.adopt({
          packet: {
            id: packetId, type: 'group_lucky', senderId: 'sender', targetId: 'group', count: workload.sharesPerPacket,
            totalFen: workload.totalFen, greeting: '', members: null, createdAtMs: nowMs, liveAtMs: nowMs, expiresAtMs: nowMs + 86_400_000,
          },
          claims: [],
          expired: false,
        });
      }
    },
    async open(open: Open): Promise<Outcome> {
      const outcome = await engine!.open(open.packetId, open.userId);
      switch (outcome.state) {
        case 'claimed':
          return { kind: 'claimed', amountFen: outcome.amountFen };
        case 'already_claimed':
          return { kind: 'already' };
        case 'sold_out':
          return { kind: 'sold_out' };
        default:
          return { kind: 'busy' };
      }
    },
    async storedClaims(): Promise<Claim[]> {
      const claims: Claim[] = [];
      const heads = await log!.heads();
      const reached = new Map<number, bigint>();
      let done: () => void = () => {};
      const finished = new Promise<void>((resolve) => (done = resolve));
      const isDone = () => heads.every((head) => (reached.get(head.partition) ?? 0n) >= BigInt(head.nextOffset));
      if (isDone()) done();
      const subscription = await log!.subscribe([], async (batch) => {
        for (const event of batch.events) if (event.kind === 'claim') claims.push({ packetId: event.packetId, userId: event.userId, amountFen: event.amountFen });
        for (const position of batch.positions) reached.set(position.partition, BigInt(position.nextOffset));
        if (isDone()) done();
      });
      await finished;
      await subscription.stop();
      return claims;
    },
    async extra() {
      return committer ? { eventsPerAppend: committer.stats.events / Math.max(1, committer.stats.appends), appends: committer.stats.appends } : {};
    },
    async cleanup() {
      await close();
    },
  };
}
