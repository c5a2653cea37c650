// Business limits of a send request. Shape (types, strings) is checked at the HTTP edge;
// this checks what only the domain knows: counts, per-share bounds, who may receive.
import type { Fen } from '../money/money.js';
import type { Limits } from './limits.js';
import type { PacketType, PayWith } from './packet.js';

export interface SendRequest {
  readonly type: PacketType;
  readonly senderId: string;
  readonly targetId: string;
  readonly count: number;
  /** group_lucky: the total; personal and group_fixed: each share. */
  readonly amountFen: Fen;
  readonly greeting: string;
  readonly members: readonly string[] | null;
  /** A payment provider; absent means the balance. */
  readonly payWith?: Exclude<PayWith, 'balance'>;
}

export const MEMBERS_MAX = 500;

export type SendPlan = { ok: true; totalFen: Fen } | { ok: false; problems: string[] };

export function planSend(request: SendRequest, limits: Limits): SendPlan {
  const problems: string[] = [];
  const { type, count, amountFen } = request;
  const yuan = (fen: Fen) => (fen / 100).toFixed(2); // message text only, never an amount

  if (!Number.isSafeInteger(count) || count < 1) problems.push('count must be a positive integer');
  else if (type === 'personal' && count !== 1) problems.push('a personal packet has exactly 1 share (count must be 1)');
  else if (count > limits.countMax) problems.push(`count must be at most ${limits.countMax}`);

  if ([...request.greeting].length > limits.greetingLengthMax) {
    problems.push(`greeting must be at most ${limits.greetingLengthMax} characters`);
  }
  if (type === 'personal' && request.targetId === request.senderId) problems.push('you cannot send a personal packet to yourself');
  if (request.members !== null) {
    if (type === 'personal') problems.push('members is only for group packets');
    else if (request.members.length === 0) problems.push('members, when given, must list at least one user');
    else if (request.members.length > MEMBERS_MAX) problems.push(`members must list at most ${MEMBERS_MAX} users`);
    else if (new Set(request.members).size !== request.members.length) problems.push('members must not repeat a user');
  }

  if (problems.length > 0) return { ok: false, problems };

  if (type === 'group_lucky') {
    if (amountFen < count * limits.shareFenMin) {
      problems.push(`amount must be at least ${yuan(count * limits.shareFenMin)} for ${count} shares`);
    } else if (amountFen > count * limits.shareFenMax) {
      problems.push(`amount must be at most ${yuan(count * limits.shareFenMax)} for ${count} shares`);
    }
    return problems.length > 0 ? { ok: false, problems } : { ok: true, totalFen: amountFen };
  }
  if (amountFen < limits.shareFenMin || amountFen > limits.shareFenMax) {
    problems.push(`each share must be between ${yuan(limits.shareFenMin)} and ${yuan(limits.shareFenMax)}`);
    return { ok: false, problems };
  }
  return { ok: true, totalFen: amountFen * count };
}
