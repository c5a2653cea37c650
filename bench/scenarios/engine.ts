// Scenario 1, the engine alone, in process, no I/O (the log "acknowledges" at once):
// (a) spread — many live lucky packets of 100 shares, random openers;
// (b) hot — one 100-share packet, 10,000 racing openers, repeated.
import { DEFAULT_LIMITS } from '../../src/domain/limits.js';
import type { Packet } from '../../src/domain/packet.js';
import { packetSeed, type Seed } from '../../src/domain/random.js';
import { Engine } from '../../src/engine/engine.js';
import { emit, median, quick, seededRandom } from '../support.js';

const clock = { now: () => 1_800_000_000_000 };
const acknowledged = Promise.resolve();

function engineWith(packets: number, seed: Seed): { engine: Engine; ids: string[] } {
  const engine = new Engine({
    limits: DEFAULT_LIMITS,
    clock,
    seedFor: () => seed,
    source: { load: async () => null },
    commit: () => acknowledged,
  });
  const ids: string[] = [];
  for (let index = 0; index < packets; index += 1) {
    const packet: Packet = {
      id: `p${index}`, type: 'group_lucky', senderId: 's', targetId: 'g', count: 100, totalFen: 10_000, greeting: '',
      members: null, createdAtMs: clock.now(), liveAtMs: clock.now(), expiresAtMs: clock.now() + 86_400_000,
    };
    engine.adopt({ packet, claims: [], expired: false });
    ids.push(packet.id);
  }
  return { engine, ids };
}

async function spread(packets: number, opens: number) {
  const { engine, ids } = engineWith(packets, packetSeed('bench', 'spread'));
  const random = seededRandom(7);
  const schedule = Array.from({ length: opens }, () => [ids[Math.floor(random() * ids.length)]!, `u${Math.floor(random() * 1e6)}`] as const);
  const window = 10_000; // opens in flight at once, as a busy server would have
  let claimed = 0;
  const started = process.hrtime.bigint();
  for (let offset = 0; offset < schedule.length; offset += window) {
    const outcomes = await Promise.all(schedule.slice(offset, offset + window).map(([packetId, userId]) => engine.open(packetId, userId)));
    for (const outcome of outcomes) if (outcome.state === 'claimed') claimed += 1;
  }
  const elapsedNs = Number(process.hrtime.bigint() - started);
  return { opens, claimed, opensPerSecond: (opens / elapsedNs) * 1e9, nsPerOpen: elapsedNs / opens };
}

async function hot(openers: number) {
  const { engine, ids } = engineWith(1, packetSeed('bench', 'hot'));
  const users = Array.from({ length: openers }, (_, index) => `u${index}`);
  const started = process.hrtime.bigint();
  const outcomes = await Promise.all(users.map((userId) => engine.open(ids[0]!, userId)));
  const elapsedNs = Number(process.hrtime.bigint() - started);
  const claimed = outcomes.filter((outcome) => outcome.state === 'claimed').length;
  if (claimed !== 100) throw new Error(`hot packet: ${claimed} claimed, expected 100`);
  return elapsedNs / 1e6;
}

const packets = quick ? 10_000 : 100_000;
const opens = quick ? 200_000 : 2_000_000;
await spread(Math.min(packets, 5_000), 100_000); // warm up the JIT
const spreadRuns = [];
for (let run = 0; run < (quick ? 1 : 3); run += 1) spreadRuns.push(await spread(packets, opens));
for (let run = 0; run < 20; run += 1) await hot(10_000); // warm-up
const hotRuns = [];
for (let run = 0; run < (quick ? 10 : 50); run += 1) hotRuns.push(await hot(10_000));
emit({
  scenario: 'engine',
  spread: {
    packets, opens,
    opensPerSecond: median(spreadRuns.map((run) => run.opensPerSecond)),
    nsPerOpen: median(spreadRuns.map((run) => run.nsPerOpen)),
    runs: spreadRuns.length,
  },
  hot: { openers: 10_000, shares: 100, drainMs: median(hotRuns), drainMsMax: Math.max(...hotRuns), runs: hotRuns.length },
});
