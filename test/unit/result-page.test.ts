// Proves the result page follows API.md rules 1–9 for every packet kind, status and role, and that best luck, time to empty and who may open/view are right.
import { describe, expect, it } from 'vitest';
import { bestLuck, statusOf, timeToEmptyMs } from '../../src/domain/outcome.js';
import { mayOpen, mayView, type Claim, type Packet, type PacketStatus, type PacketType } from '../../src/domain/packet.js';
import { resultPage, WALLET_NOTICE, type PageAction } from '../../src/domain/result-page.js';

const LIVE_AT_MS = Date.UTC(2026, 1, 17, 0, 0, 0);
const DAY_MS = 24 * 60 * 60 * 1000;

function packetOf(type: PacketType, count: number, totalFen: number, overrides: Partial<Packet> = {}): Packet {
  return {
    id: `p-${type}`,
    type,
    senderId: 'alice',
    targetId: type === 'personal' ? 'bob' : 'g1',
    count,
    totalFen,
    greeting: '恭喜发财,大吉大利',
    members: null,
    createdAtMs: LIVE_AT_MS - 500,
    liveAtMs: LIVE_AT_MS,
    expiresAtMs: LIVE_AT_MS + DAY_MS,
    ...overrides,
  };
}

/** Claims in open order; the last one lands 15.4 s after the packet went live (→ "15秒"). */
function claimsOf(packet: Packet, openers: readonly [string, number][]): Claim[] {
  return openers.map(([userId, amountFen], index) => ({
    packetId: packet.id,
    seq: index + 1,
    userId,
    amountFen,
    claimedAtMs: LIVE_AT_MS + (index + 1 === packet.count ? 15_400 : (index + 1) * 1000),
  }));
}

// Roles: alice sends; bob opens first (seq 1); carol may view but has not opened.
const SENDER = 'alice';
const OPENER = 'bob';
const VIEWER = 'carol';

// group_lucky: 10 shares, 20.00 yuan. Finished: two shares tie at 4.00 (seq 3 and seq 7): seq 3 is best.
const lucky = packetOf('group_lucky', 10, 2000);
const LUCKY_OPENERS: [string, number][] = [
  ['bob', 100], ['dave', 200], ['erin', 400], ['frank', 150], ['grace', 250],
  ['heidi', 100], ['ivan', 400], ['judy', 150], ['mallory', 150], ['niaj', 100],
];
const LUCKY_BEST_SEQ = 3;
// group_fixed: 3 shares of 1.00.
const fixed = packetOf('group_fixed', 3, 300);
const FIXED_OPENERS: [string, number][] = [['bob', 100], ['dave', 100], ['erin', 100]];
// personal: 5.00 yuan from alice to bob.
const personal = packetOf('personal', 1, 500);
const PERSONAL_OPENERS: [string, number][] = [['bob', 500]];

const fixtures = {
  group_lucky: { packet: lucky, openers: LUCKY_OPENERS },
  group_fixed: { packet: fixed, openers: FIXED_OPENERS },
  personal: { packet: personal, openers: PERSONAL_OPENERS },
} as const;

/** Live and expired packets have 2 of their group shares claimed (none of a personal one); finished ones all. */
function claimsFor(type: PacketType, status: PacketStatus): Claim[] {
  const { packet, openers } = fixtures[type];
  if (status === 'finished') return claimsOf(packet, openers);
  return claimsOf(packet, type === 'personal' ? [] : openers.slice(0, 2));
}

interface Row {
  readonly rules: string;
  readonly type: PacketType;
  readonly status: PacketStatus;
  readonly viewer: string;
  readonly summary: string;
  readonly actions: PageAction[];
  /** Present exactly when the viewer has opened the packet (rule 1). */
  readonly myAmountFen?: number;
  /** Rule 7: whether the claims list is on the page at all. */
  readonly claims: boolean;
  /** Rule 8: which claim carries best: true, if any. */
  readonly bestSeq?: number;
  readonly revealTotal: boolean;
}

const ROWS: Row[] = [
  // group_lucky, live
  { rules: '2 5 7', type: 'group_lucky', status: 'live', viewer: SENDER, summary: '已领取2/10个,共3.00/20.00元', actions: ['resend'], claims: true, revealTotal: true },
  { rules: '1 3 5 7', type: 'group_lucky', status: 'live', viewer: OPENER, summary: '领取2/10个', actions: ['view_my_records'], myAmountFen: 100, claims: true, revealTotal: false },
  { rules: '5 7', type: 'group_lucky', status: 'live', viewer: VIEWER, summary: '领取2/10个', actions: [], claims: true, revealTotal: false },
  // group_lucky, finished
  { rules: '4 7 8', type: 'group_lucky', status: 'finished', viewer: SENDER, summary: '10个红包共20.00元,15秒被抢光', actions: [], claims: true, bestSeq: LUCKY_BEST_SEQ, revealTotal: true },
  { rules: '1 3 4 7 8', type: 'group_lucky', status: 'finished', viewer: OPENER, summary: '10个红包,15秒被抢光', actions: ['view_my_records'], myAmountFen: 100, claims: true, bestSeq: LUCKY_BEST_SEQ, revealTotal: false },
  { rules: '4 7 8', type: 'group_lucky', status: 'finished', viewer: VIEWER, summary: '10个红包,15秒被抢光', actions: [], claims: true, bestSeq: LUCKY_BEST_SEQ, revealTotal: false },
  // group_lucky, expired
  { rules: '2 7 9', type: 'group_lucky', status: 'expired', viewer: SENDER, summary: '该红包已过期,已领取2/10个,共3.00/20.00元', actions: [], claims: true, revealTotal: true },
  { rules: '1 3 7 9', type: 'group_lucky', status: 'expired', viewer: OPENER, summary: '该红包已过期', actions: ['view_my_records'], myAmountFen: 100, claims: true, revealTotal: false },
  { rules: '7 9', type: 'group_lucky', status: 'expired', viewer: VIEWER, summary: '该红包已过期', actions: [], claims: true, revealTotal: false },

  // group_fixed, live
  { rules: '2 5 7', type: 'group_fixed', status: 'live', viewer: SENDER, summary: '已领取2/3个,共2.00/3.00元', actions: ['resend'], claims: true, revealTotal: true },
  { rules: '1 3 5 7', type: 'group_fixed', status: 'live', viewer: OPENER, summary: '领取2/3个', actions: ['view_my_records'], myAmountFen: 100, claims: false, revealTotal: false },
  { rules: '5 7', type: 'group_fixed', status: 'live', viewer: VIEWER, summary: '领取2/3个', actions: [], claims: false, revealTotal: false },
  // group_fixed, finished
  { rules: '4 7 8', type: 'group_fixed', status: 'finished', viewer: SENDER, summary: '3个红包共3.00元', actions: [], claims: true, revealTotal: true },
  { rules: '1 3 4 7', type: 'group_fixed', status: 'finished', viewer: OPENER, summary: '3个红包共3.00元', actions: ['view_my_records'], myAmountFen: 100, claims: false, revealTotal: true },
  { rules: '4 7', type: 'group_fixed', status: 'finished', viewer: VIEWER, summary: '3个红包共3.00元', actions: [], claims: false, revealTotal: true },
  // group_fixed, expired
  { rules: '2 7 9', type: 'group_fixed', status: 'expired', viewer: SENDER, summary: '该红包已过期,已领取2/3个,共2.00/3.00元', actions: [], claims: true, revealTotal: true },
  { rules: '1 3 7 9', type: 'group_fixed', status: 'expired', viewer: OPENER, summary: '该红包已过期', actions: ['view_my_records'], myAmountFen: 100, claims: false, revealTotal: false },
  { rules: '7 9', type: 'group_fixed', status: 'expired', viewer: VIEWER, summary: '该红包已过期', actions: [], claims: false, revealTotal: false },

  // personal (only bob may open; live and expired ones are unopened, so bob is the viewer who did not open)
  { rules: '2 6 7', type: 'personal', status: 'live', viewer: SENDER, summary: '红包金额5.00元,等待对方领取', actions: ['resend'], claims: true, revealTotal: true },
  { rules: '6 7', type: 'personal', status: 'live', viewer: OPENER, summary: '领取0/1个', actions: [], claims: false, revealTotal: false },
  { rules: '4 7 8', type: 'personal', status: 'finished', viewer: SENDER, summary: '1个红包共5.00元', actions: [], claims: true, revealTotal: true },
  { rules: '1 3 4 7', type: 'personal', status: 'finished', viewer: OPENER, summary: '1个红包共5.00元', actions: ['view_my_records'], myAmountFen: 500, claims: false, revealTotal: true },
  { rules: '2 7 9', type: 'personal', status: 'expired', viewer: SENDER, summary: '该红包已过期,已领取0/1个,共0.00/5.00元', actions: [], claims: true, revealTotal: true },
  { rules: '7 9', type: 'personal', status: 'expired', viewer: OPENER, summary: '该红包已过期', actions: [], claims: false, revealTotal: false },
];

describe('resultPage: rules 1–9 by kind, status and role', () => {
  it.each(ROWS)('rules $rules: $type $status seen by $viewer', (row) => {
    const claims = claimsFor(row.type, row.status);
    const page = resultPage(fixtures[row.type].packet, row.status, claims, row.viewer);

    expect(page.summary).toBe(row.summary);
    expect(page.actions).toEqual(row.actions);
    expect(page.revealTotal).toBe(row.revealTotal);

    // Rule 1: myAmount and the notice appear together, only for a viewer who opened.
    if (row.myAmountFen === undefined) {
      expect(page).not.toHaveProperty('myAmountFen');
      expect(page).not.toHaveProperty('notice');
    } else {
      expect(page.myAmountFen).toBe(row.myAmountFen);
      expect(page.notice).toBe(WALLET_NOTICE);
    }

    // Rules 7 and 8: the list, newest first, best only where a finished lucky packet earns it.
    if (!row.claims) {
      expect(page).not.toHaveProperty('claims');
    } else {
      const newestFirst = [...claims].reverse().map((claim) => ({
        userId: claim.userId,
        amountFen: claim.amountFen,
        claimedAtMs: claim.claimedAtMs,
        best: claim.seq === row.bestSeq,
        // Paid from the balance: every claim is credited.
        credited: true,
      }));
      expect(page.claims).toEqual(newestFirst);
    }
  });

  it('covers every rule at least once', () => {
    const covered = new Set(ROWS.flatMap((row) => row.rules.split(' ')));
    expect([...covered].sort()).toEqual(['1', '2', '3', '4', '5', '6', '7', '8', '9']);
  });
});

describe('resultPage: details of individual rules', () => {
  it('notice names one of the places API.md allows (rule 1)', () => {
    expect(['已存入零钱,可用于发红包', '可用于消费', '可用于转账', '可用于提现']).toContain(WALLET_NOTICE);
  });

  it('rules 1 and 2: a sender who opened their own live group packet sees their amount and resend, not view_my_records', () => {
    const claims = claimsOf(lucky, [['alice', 321], ['bob', 100]]);
    const page = resultPage(lucky, 'live', claims, SENDER);
    expect(page.myAmountFen).toBe(321);
    expect(page.notice).toBe(WALLET_NOTICE);
    expect(page.actions).toEqual(['resend']);
    expect(page.summary).toBe('已领取2/10个,共4.21/20.00元');
  });

  it('rule 6 applies to a one-share group packet too', () => {
    const single = packetOf('group_lucky', 1, 888);
    expect(resultPage(single, 'live', [], SENDER).summary).toBe('红包金额8.88元,等待对方领取');
    expect(resultPage(single, 'live', [], VIEWER).summary).toBe('领取0/1个');
    expect(resultPage(single, 'expired', [], SENDER).summary).toBe('该红包已过期,已领取0/1个,共0.00/8.88元');
  });

  it('rule 4: s is whole seconds from going live to the last open, rounded down', () => {
    const two = packetOf('group_lucky', 2, 300);
    const claims: Claim[] = [
      { packetId: two.id, seq: 1, userId: 'bob', amountFen: 100, claimedAtMs: LIVE_AT_MS + 999 },
      { packetId: two.id, seq: 2, userId: 'dave', amountFen: 200, claimedAtMs: LIVE_AT_MS + 59_999 },
    ];
    expect(resultPage(two, 'finished', claims, SENDER).summary).toBe('2个红包共3.00元,59秒被抢光');
    expect(resultPage(two, 'finished', claims, VIEWER).summary).toBe('2个红包,59秒被抢光');
    const instant = claims.map((claim) => ({ ...claim, claimedAtMs: LIVE_AT_MS + 400 }));
    expect(resultPage(two, 'finished', instant, VIEWER).summary).toBe('2个红包,0秒被抢光');
  });

  it('rule 7: newest first by seq, whatever order the claims arrive in', () => {
    const claims = claimsOf(lucky, LUCKY_OPENERS);
    const shuffled = [claims[4], claims[0], claims[9], claims[2], claims[7], claims[1], claims[8], claims[3], claims[6], claims[5]].filter(
      (claim): claim is Claim => claim !== undefined,
    );
    const page = resultPage(lucky, 'finished', shuffled, VIEWER);
    expect(page.claims?.map((claim) => claim.userId)).toEqual([...LUCKY_OPENERS].reverse().map(([userId]) => userId));
  });

  it('rule 8: on a tie the earliest open is best, however the claims are ordered', () => {
    const claims = claimsOf(lucky, LUCKY_OPENERS);
    const page = resultPage(lucky, 'finished', [...claims].reverse(), VIEWER);
    const best = page.claims?.filter((claim) => claim.best) ?? [];
    expect(best).toEqual([expect.objectContaining({ userId: 'erin', amountFen: 400, best: true })]);
    expect(page.claims?.find((claim) => claim.userId === 'ivan')?.best).toBe(false); // the later 4.00
  });

  it('rule 8: no best on a finished fixed packet, although all shares tie', () => {
    const page = resultPage(fixed, 'finished', claimsOf(fixed, FIXED_OPENERS), SENDER);
    expect(page.claims?.some((claim) => claim.best)).toBe(false);
  });

  it('rule 8: no best on a live lucky packet, even when its largest share is already out', () => {
    const page = resultPage(lucky, 'live', claimsOf(lucky, LUCKY_OPENERS.slice(0, 9)), VIEWER);
    expect(page.claims).toHaveLength(9);
    expect(page.claims?.some((claim) => claim.best)).toBe(false);
  });

  it('rule 5: amounts are summed in fen and written with two decimals', () => {
    const claims = claimsOf(lucky, [['bob', 1], ['dave', 10]]);
    expect(resultPage(lucky, 'live', claims, SENDER).summary).toBe('已领取2/10个,共0.11/20.00元');
  });
});

describe('bestLuck', () => {
  const claim = (seq: number, amountFen: number): Claim => ({
    packetId: 'p',
    seq,
    userId: `u${seq}`,
    amountFen,
    claimedAtMs: LIVE_AT_MS + seq,
  });

  it('is undefined without claims', () => {
    expect(bestLuck([])).toBeUndefined();
  });

  it('is the largest amount', () => {
    expect(bestLuck([claim(1, 100), claim(2, 900), claim(3, 300)])?.seq).toBe(2);
  });

  it('on a tie is the earliest open (lowest seq), in any order', () => {
    const claims = [claim(5, 700), claim(2, 700), claim(1, 100), claim(9, 700)];
    expect(bestLuck(claims)?.seq).toBe(2);
    expect(bestLuck([...claims].reverse())?.seq).toBe(2);
  });

  it('is the only claim of a one-share packet', () => {
    expect(bestLuck([claim(1, 1)])?.seq).toBe(1);
  });
});

describe('timeToEmptyMs', () => {
  const three = packetOf('group_lucky', 3, 300);
  const at = (seq: number, offsetMs: number): Claim => ({
    packetId: three.id,
    seq,
    userId: `u${seq}`,
    amountFen: 100,
    claimedAtMs: LIVE_AT_MS + offsetMs,
  });

  it('is undefined while shares remain', () => {
    expect(timeToEmptyMs(three, [])).toBeUndefined();
    expect(timeToEmptyMs(three, [at(1, 10), at(2, 20)])).toBeUndefined();
  });

  it('is the time from going live to the last open', () => {
    expect(timeToEmptyMs(three, [at(1, 100), at(2, 2_000), at(3, 15_400)])).toBe(15_400);
  });

  it('takes the latest open, not the last in the list', () => {
    expect(timeToEmptyMs(three, [at(3, 15_400), at(1, 100), at(2, 2_000)])).toBe(15_400);
  });

  it('counts from liveAt, not createdAt', () => {
    const paidLater = { ...three, createdAtMs: LIVE_AT_MS - 60_000 };
    expect(timeToEmptyMs(paidLater, [at(1, 0), at(2, 0), at(3, 1_000)])).toBe(1_000);
  });
});

describe('statusOf', () => {
  it.each<[number, boolean, PacketStatus]>([
    [0, false, 'live'],
    [9, false, 'live'],
    [9, true, 'expired'],
    [10, false, 'finished'],
    [10, true, 'finished'],
  ])('%i of 10 claimed, closed as expired %s → %s', (claimedCount, closedAsExpired, status) => {
    expect(statusOf(lucky, claimedCount, closedAsExpired)).toBe(status);
  });
});

describe('mayOpen and mayView', () => {
  it.each<[string, Packet, string, boolean, boolean]>([
    // [case, packet, user, mayOpen, mayView]
    ['personal: the target may open', personal, 'bob', true, true],
    ['personal: the sender may not open their own, but may view', personal, 'alice', false, true],
    ['personal: anyone else may neither open nor view', personal, 'carol', false, false],
    ['personal addressed to the sender: still nobody opens it', packetOf('personal', 1, 500, { targetId: 'alice' }), 'alice', false, true],
    ['group without members: anyone may open', lucky, 'carol', true, true],
    ['group without members: the sender may open their own', lucky, 'alice', true, true],
    ['group_fixed without members: the sender may open their own', fixed, 'alice', true, true],
    ['group with members: a listed member may open', packetOf('group_lucky', 2, 200, { members: ['bob', 'dave'] }), 'bob', true, true],
    ['group with members: an unlisted user may neither open nor view', packetOf('group_lucky', 2, 200, { members: ['bob', 'dave'] }), 'carol', false, false],
    ['group with members: the unlisted sender may still open their own group packet (API.md)', packetOf('group_fixed', 2, 200, { members: ['bob', 'dave'] }), 'alice', true, true],
    ['group with members: an unlisted other user may neither open nor view', packetOf('group_fixed', 2, 200, { members: ['bob', 'dave'] }), 'carol', false, false],
    ['group with members: a listed sender may open', packetOf('group_fixed', 2, 200, { members: ['alice', 'bob'] }), 'alice', true, true],
  ])('%s', (_, packet, userId, open, view) => {
    expect(mayOpen(packet, userId)).toBe(open);
    expect(mayView(packet, userId)).toBe(view);
  });
});
