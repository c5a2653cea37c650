// Packets for engine tests and the simulation: plain domain data, built the way the service
// would after planSend accepted a request, so the engine only ever sees packets within limits.
import { DEFAULT_LIMITS, type Limits } from '../../src/domain/limits.js';
import type { Packet, PacketType } from '../../src/domain/packet.js';
import { planSend } from '../../src/domain/validation.js';
import type { Fen } from '../../src/money/money.js';

export const SIM_SEED_SECRET = 'simulation-seed-secret';
export const SIM_START_MS = Date.UTC(2026, 0, 1);

export interface PacketRequest {
  readonly id: string;
  readonly type: PacketType;
  readonly senderId: string;
  /** The receiver of a personal packet; the group of a group packet. */
  readonly targetId?: string;
  readonly count?: number;
  /** group_lucky: the total; personal and group_fixed: each share (as in SendRequest). */
  readonly amountFen: Fen;
  readonly members?: readonly string[] | null;
  readonly nowMs?: number;
}

/** A live packet built through planSend, so a test cannot build one the service would refuse. */
export function makePacket(request: PacketRequest, limits: Limits = DEFAULT_LIMITS): Packet {
  const nowMs = request.nowMs ?? SIM_START_MS;
  const count = request.count ?? 1;
  const targetId = request.targetId ?? (request.type === 'personal' ? 'receiver' : 'group-1');
  const members = request.members ?? null;
  const plan = planSend(
    { type: request.type, senderId: request.senderId, targetId, count, amountFen: request.amountFen, greeting: '', members },
    limits,
  );
  if (!plan.ok) throw new Error(`test packet ${request.id} is outside the limits: ${plan.problems.join('; ')}`);
  return {
    id: request.id,
    type: request.type,
    senderId: request.senderId,
    targetId,
    count,
    totalFen: plan.totalFen,
    greeting: '',
    members,
    createdAtMs: nowMs,
    liveAtMs: nowMs,
    expiresAtMs: nowMs + limits.ttlMs,
  };
}
