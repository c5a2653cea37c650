// The result page (API.md rules 1–9) as one pure function of (packet, claims, viewer).
import { formatFen, type Fen } from '../money/money.js';
import { bestLuck, timeToEmptyMs } from './outcome.js';
import type { Claim, Packet, PacketStatus } from './packet.js';

export const WALLET_NOTICE = '已存入零钱,可用于发红包';

export type PageAction = 'resend' | 'view_my_records';

export interface PageClaim {
  readonly userId: string;
  readonly amountFen: Fen;
  readonly claimedAtMs: number;
  readonly best: boolean;
  /** False while its money is held: the packet awaits its funds, or was cancelled (the claim is void). */
  readonly credited: boolean;
}

export interface ResultPage {
  readonly summary: string;
  /** Whether `total` and `claimedAmount` may be shown to this viewer. */
  readonly revealTotal: boolean;
  readonly myAmountFen?: Fen;
  readonly claims?: PageClaim[];
  readonly actions: PageAction[];
  readonly notice?: string;
}

export function resultPage(packet: Packet, status: PacketStatus, claims: readonly Claim[], viewerId: string): ResultPage {
  const own = viewerId === packet.senderId;
  const mine = claims.find((claim) => claim.userId === viewerId);
  const lucky = packet.type === 'group_lucky';
  const n = packet.count;
  const m = formatFen(packet.totalFen);
  const x = claims.length;
  const a = formatFen(claims.reduce((sum, claim) => sum + claim.amountFen, 0));

  let summary: string;
  if (status === 'finished') {
    const seconds = Math.floor((timeToEmptyMs(packet, claims) ?? 0) / 1000);
    if (!lucky) summary = `${n}个红包共${m}元`;
    else summary = own ? `${n}个红包共${m}元,${seconds}秒被抢光` : `${n}个红包,${seconds}秒被抢光`;
  } else if (status === 'expired') {
    summary = own ? `该红包已过期,已领取${x}/${n}个,共${a}/${m}元` : '该红包已过期';
  } else if (own) {
    summary = n > 1 ? `已领取${x}/${n}个,共${a}/${m}元` : `红包金额${m}元,等待对方领取`;
  } else {
    summary = `领取${x}/${n}个`;
  }

  const actions: PageAction[] = [];
  // Rule 2 as written: not finished and not expired (a packet awaiting its funds, or one whose payment failed, can be sent again).
  if (own && status !== 'finished' && status !== 'expired') actions.push('resend');
  if (!own && mine !== undefined) actions.push('view_my_records');

  const showClaims = lucky || own;
  const best = lucky && status === 'finished' ? bestLuck(claims) : undefined;
  const credited = status !== 'awaiting_funds' && status !== 'cancelled';
  const page: ResultPage = {
    summary,
    revealTotal: own || (status === 'finished' && !lucky),
    actions,
    ...(mine !== undefined ? { myAmountFen: mine.amountFen, notice: WALLET_NOTICE } : {}),
    ...(showClaims
      ? {
          claims: [...claims]
            .sort((left, right) => right.seq - left.seq)
            .map((claim) => ({
              userId: claim.userId,
              amountFen: claim.amountFen,
              claimedAtMs: claim.claimedAtMs,
              best: best !== undefined && claim.seq === best.seq,
              credited,
            })),
        }
      : {}),
  };
  return page;
}
