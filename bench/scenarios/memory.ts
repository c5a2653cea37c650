// Scenario 6, memory: heap per idle live packet with 1,000,000 live packets in one process.
// Run with --expose-gc so the numbers are after a full collection.
import { DEFAULT_LIMITS } from '../../src/domain/limits.js';
import type { Packet } from '../../src/domain/packet.js';
import { Engine } from '../../src/engine/engine.js';
import { emit, quick } from '../support.js';

const collect = (globalThis as { gc?: () => void }).gc;
if (collect === undefined) throw new Error('run with node --expose-gc');
const clock = { now: () => 1_800_000_000_000 };
const seed = [1, 2, 3, 4] as const;
const engine = new Engine({ limits: DEFAULT_LIMITS, clock, seedFor: () => seed, source: { load: async () => null }, commit: () => Promise.resolve() });

const packets = quick ? 100_000 : 1_000_000;
collect();
const before = process.memoryUsage().heapUsed;
for (let index = 0; index < packets; index += 1) {
  const packet: Packet = {
    id: `p_${index.toString(36).padStart(16, '0')}`, type: 'group_lucky', senderId: `sender${index % 50_000}`, targetId: `group${index % 20_000}`,
    count: 100, totalFen: 10_000, greeting: '恭喜发财,大吉大利', members: null,
    createdAtMs: clock.now(), liveAtMs: clock.now(), expiresAtMs: clock.now() + 86_400_000,
  };
  engine.adopt({ packet, claims: [], expired: false });
}
collect();
const after = process.memoryUsage().heapUsed;
if (engine.stats.actors !== packets) throw new Error('not every packet is live');
emit({ scenario: 'memory', packets, heapBytesPerPacket: (after - before) / packets, heapMiB: after / 2 ** 20 });
