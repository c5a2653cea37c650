// deriveNotifications (src/notify/derive.ts) over hand-made log events and ledger facts: which
// API events each log event yields (API.md, Notifications), with which data, for whom, and with
// ids that depend only on what happened (deriving twice gives the same ids: a retry, a replayed
// batch or a restart of the notifier carries the same id).
import { describe, expect, it } from 'vitest';
import { sentEvent, type NotificationEvent } from '../../src/domain/notification.js';
import type { Claim, Packet } from '../../src/domain/packet.js';
import type { ClaimEvent, ExpireEvent, PacketEvent, PaymentEvent } from '../../src/log/events.js';
import { deriveNotifications, packetsNeedingClaims, type PacketFacts } from '../../src/notify/derive.js';

const T0 = Date.UTC(2026, 1, 17, 4, 0, 0);

function packet(overrides: Partial<Packet> = {}): Packet {
  return {
    id: 'pk1',
    type: 'group_lucky',
    senderId: 'alice',
    targetId: 'g1',
    count: 3,
    totalFen: 600,
    greeting: '恭喜发财',
    members: null,
    createdAtMs: T0,
    liveAtMs: T0,
    expiresAtMs: T0 + 86_400_000,
    ...overrides,
  };
}

const claim = (p: Packet, seq: number, userId: string, amountFen: number, claimedAtMs: number): Claim => ({ packetId: p.id, seq, userId, amountFen, claimedAtMs });

const claimEvent = (c: Claim, held = false): ClaimEvent => ({
  kind: 'claim',
  packetId: c.packetId,
  seq: c.seq,
  userId: c.userId,
  amountFen: c.amountFen,
  atMs: c.claimedAtMs,
  ...(held ? { held: true as const } : {}),
});

const payment = (p: Packet, change: PaymentEvent['change'], extra: Partial<PaymentEvent> = {}): PaymentEvent => ({
  kind: 'payment',
  packetId: p.id,
  change,
  provider: 'sandbox',
  orderId: `ord_${p.id}`,
  senderId: p.senderId,
  amountFen: p.totalFen,
  liveAtMs: p.liveAtMs,
  expiresAtMs: p.expiresAtMs,
  atMs: T0 + 5_000,
  ...extra,
});

/** The ledger's facts of one packet: it, its claims, and how many it has. */
function factsOf(p: Packet, claims: readonly Claim[]): (packetId: string) => PacketFacts | undefined {
  const facts = { packet: p, claims, claimedCount: claims.length };
  return (packetId) => (packetId === p.id ? facts : undefined);
}

const summary = (events: readonly NotificationEvent[]) => events.map((event) => `${event.type} ${event.id} → ${event.recipients.join(',')}`);

describe('deriveNotifications', () => {
  it('a claim: packet.opened for the sender, wallet.credited for the opener, both with the claim', () => {
    const p = packet();
    const c1 = claim(p, 1, 'bob', 250, T0 + 1_000);
    const derived = deriveNotifications([claimEvent(c1)], factsOf(p, [c1]));
    expect(summary(derived)).toEqual(['packet.opened evt_opened_pk1_1 → alice', 'wallet.credited evt_credited_pk1_1 → bob']);
    const [opened, credited] = derived as [NotificationEvent, NotificationEvent];
    expect(opened).toMatchObject({ packetId: 'pk1', createdAtMs: T0 + 1_000 });
    expect(opened.data).toEqual({ packetId: 'pk1', senderId: 'alice', userId: 'bob', amount: '2.50', seq: 1, credited: true });
    expect(credited).toMatchObject({ packetId: 'pk1', createdAtMs: T0 + 1_000 });
    expect(credited.data).toEqual({ userId: 'bob', amount: '2.50', packetId: 'pk1', senderId: 'alice', seq: 1, reason: 'claim' });
  });

  it('the last share: opened, credited, then packet.finished with the best luck (lucky) and the seconds to empty', () => {
    const p = packet();
    const claims = [claim(p, 1, 'bob', 100, T0 + 1_000), claim(p, 2, 'carol', 300, T0 + 4_000), claim(p, 3, 'dave', 200, T0 + 12_900)];
    // The ledger's facts may already hold claims of later batches: the finished event reads only the packet's count.
    const derived = deriveNotifications([claimEvent(claims[2]!)], factsOf(p, claims));
    expect(summary(derived)).toEqual([
      'packet.opened evt_opened_pk1_3 → alice',
      'wallet.credited evt_credited_pk1_3 → dave',
      'packet.finished evt_finished_pk1 → alice',
    ]);
    expect(derived[2]!.createdAtMs).toBe(T0 + 12_900);
    expect(derived[2]!.data).toEqual({
      packetId: 'pk1',
      senderId: 'alice',
      count: 3,
      total: '6.00',
      secondsToEmpty: 12,
      bestLuck: { userId: 'carol', amount: '3.00', seq: 2 },
    });
    // Not the last share: no finished.
    expect(deriveNotifications([claimEvent(claims[1]!)], factsOf(p, claims)).map((event) => event.type)).toEqual(['packet.opened', 'wallet.credited']);
  });

  it('the best luck on a tie is the earlier open; a group_fixed packet has no best luck', () => {
    const lucky = packet();
    const tie = [claim(lucky, 1, 'bob', 200, T0 + 10), claim(lucky, 2, 'carol', 200, T0 + 20), claim(lucky, 3, 'dave', 200, T0 + 30)];
    expect(deriveNotifications([claimEvent(tie[2]!)], factsOf(lucky, tie))[2]!.data.bestLuck).toEqual({ userId: 'bob', amount: '2.00', seq: 1 });
    const fixed = packet({ id: 'pk2', type: 'group_fixed' });
    const shares = [claim(fixed, 1, 'bob', 200, T0 + 10), claim(fixed, 2, 'carol', 200, T0 + 20), claim(fixed, 3, 'dave', 200, T0 + 2_500)];
    const finished = deriveNotifications([claimEvent(shares[2]!)], factsOf(fixed, shares))[2]!;
    expect(finished.type).toBe('packet.finished');
    expect(finished.data).toMatchObject({ bestLuck: null, secondsToEmpty: 2 });
  });

  it('a personal packet (count 1) finishes with its only open', () => {
    const p = packet({ id: 'pk3', type: 'personal', targetId: 'bob', count: 1, totalFen: 520 });
    const only = claim(p, 1, 'bob', 520, T0 + 61_000);
    const derived = deriveNotifications([claimEvent(only)], factsOf(p, [only]));
    expect(derived.map((event) => event.type)).toEqual(['packet.opened', 'wallet.credited', 'packet.finished']);
    expect(derived[2]!.data).toMatchObject({ secondsToEmpty: 61, bestLuck: null, total: '5.20', count: 1 });
  });

  it('a held claim (the money not there yet): opened with credited false, no wallet.credited, no finished even for the last share', () => {
    const p = packet({ count: 2, payment: { provider: 'sandbox', orderId: 'ord_pk1' } });
    const claims = [claim(p, 1, 'bob', 400, T0 + 1_000), claim(p, 2, 'carol', 200, T0 + 2_000)];
    const derived = deriveNotifications([claimEvent(claims[0]!, true), claimEvent(claims[1]!, true)], factsOf(p, claims));
    expect(summary(derived)).toEqual(['packet.opened evt_opened_pk1_1 → alice', 'packet.opened evt_opened_pk1_2 → alice']);
    expect(derived.map((event) => event.data.credited)).toEqual([false, false]);
  });

  it('funded: packet.live, then wallet.credited for each claim held before it (claimsBefore), and finished when every share was held', () => {
    const p = packet({ count: 3, liveAtMs: T0 + 500, payment: { provider: 'sandbox', orderId: 'ord_pk1' } });
    const claims = [claim(p, 1, 'bob', 100, T0 + 1_000), claim(p, 2, 'carol', 200, T0 + 2_000), claim(p, 3, 'dave', 300, T0 + 3_000)];
    // Two were held; the third was opened after the funds came (it is in the facts, not credited here).
    const partly = deriveNotifications([payment(p, 'funded', { claimsBefore: 2 })], factsOf(p, claims));
    expect(summary(partly)).toEqual([
      'packet.live evt_live_pk1 → alice',
      'wallet.credited evt_credited_pk1_1 → bob',
      'wallet.credited evt_credited_pk1_2 → carol',
    ]);
    expect(partly[0]!.data).toEqual({ packetId: 'pk1', senderId: 'alice' });
    expect(partly.every((event) => event.createdAtMs === T0 + 5_000)).toBe(true);
    expect(partly[2]!.data).toEqual({ userId: 'carol', amount: '2.00', packetId: 'pk1', senderId: 'alice', seq: 2, reason: 'claim' });
    // The same ids as a claim credited at once would have: a held claim is credited once, whichever way.
    expect(partly[1]!.id).toBe(deriveNotifications([claimEvent(claims[0]!)], factsOf(p, claims))[1]!.id);

    // Every share held: finished at the funding, timed from the event's start of life.
    const all = deriveNotifications([payment(p, 'funded', { claimsBefore: 3, liveAtMs: T0 })], factsOf(p, claims));
    expect(all.map((event) => event.type)).toEqual(['packet.live', 'wallet.credited', 'wallet.credited', 'wallet.credited', 'packet.finished']);
    expect(all.slice(1, 4).map((event) => event.recipients[0])).toEqual(['bob', 'carol', 'dave']);
    expect(all[4]!.data).toMatchObject({ secondsToEmpty: 3, bestLuck: { userId: 'dave', amount: '3.00', seq: 3 } });

    // None held: live only.
    expect(deriveNotifications([payment(p, 'funded', { claimsBefore: 0 })], factsOf(p, claims)).map((event) => event.type)).toEqual(['packet.live']);
    // awaiting_funds is not an API event.
    expect(deriveNotifications([payment(p, 'awaiting_funds')], factsOf(p, claims))).toEqual([]);
  });

  it('cancelled: packet.cancelled for the sender with the reason (payment_failed by default)', () => {
    const p = packet({ payment: { provider: 'sandbox', orderId: 'ord_pk1' } });
    const [timeout] = deriveNotifications([payment(p, 'cancelled', { reason: 'payment_timeout' })], factsOf(p, []));
    expect(timeout).toMatchObject({ id: 'evt_cancelled_pk1', type: 'packet.cancelled', recipients: ['alice'], createdAtMs: T0 + 5_000 });
    expect(timeout!.data).toEqual({ packetId: 'pk1', senderId: 'alice', reason: 'payment_timeout' });
    expect(deriveNotifications([payment(p, 'cancelled')], factsOf(p, []))[0]!.data.reason).toBe('payment_failed');
  });

  it('late_credit: wallet.credited to the sender, keyed by the order', () => {
    const p = packet({ payment: { provider: 'sandbox', orderId: 'ord_pk1' } });
    const [late, ...rest] = deriveNotifications([payment(p, 'late_credit', { amountFen: 600 })], factsOf(p, []));
    expect(rest).toEqual([]);
    expect(late).toMatchObject({ id: 'evt_late_ord_pk1', type: 'wallet.credited', recipients: ['alice'], packetId: 'pk1' });
    expect(late!.data).toEqual({ userId: 'alice', amount: '6.00', packetId: 'pk1', senderId: 'alice', reason: 'late_credit' });
  });

  it('expire: packet.expired for the sender with the refund and how many were claimed', () => {
    const p = packet();
    const claims = [claim(p, 1, 'bob', 150, T0 + 1_000)];
    const expire: ExpireEvent = { kind: 'expire', packetId: 'pk1', senderId: 'alice', refundFen: 450, atMs: T0 + 86_400_000 };
    const derived = deriveNotifications([expire], factsOf(p, claims));
    expect(summary(derived)).toEqual(['packet.expired evt_expired_pk1 → alice']);
    expect(derived[0]!.createdAtMs).toBe(T0 + 86_400_000);
    expect(derived[0]!.data).toEqual({ packetId: 'pk1', senderId: 'alice', refund: '4.50', claimedCount: 1 });
  });

  it('an event whose packet has no facts yields nothing; the others of the batch are derived in log order', () => {
    const p = packet({ count: 2 });
    const claims = [claim(p, 1, 'bob', 100, T0 + 1), claim(p, 2, 'carol', 500, T0 + 2)];
    const stranger: ClaimEvent = { kind: 'claim', packetId: 'unknown', seq: 1, userId: 'eve', amountFen: 1, atMs: T0 };
    const derived = deriveNotifications([claimEvent(claims[0]!), stranger, claimEvent(claims[1]!)], factsOf(p, claims));
    expect(derived.map((event) => event.id)).toEqual(['evt_opened_pk1_1', 'evt_credited_pk1_1', 'evt_opened_pk1_2', 'evt_credited_pk1_2', 'evt_finished_pk1']);
  });

  it('ids are deterministic: deriving the same batch twice gives the same events; ids are unique over a packet', () => {
    const p = packet({ count: 3, payment: { provider: 'sandbox', orderId: 'ord_pk1' } });
    const claims = [claim(p, 1, 'bob', 100, T0 + 1_000), claim(p, 2, 'carol', 200, T0 + 2_000), claim(p, 3, 'dave', 300, T0 + 3_000)];
    const batch: PacketEvent[] = [
      claimEvent(claims[0]!, true),
      payment(p, 'funded', { claimsBefore: 1 }),
      claimEvent(claims[1]!),
      claimEvent(claims[2]!),
      { kind: 'expire', packetId: 'pk1', senderId: 'alice', refundFen: 0, atMs: T0 + 9_000 },
    ];
    const first = deriveNotifications(batch, factsOf(p, claims));
    const second = deriveNotifications(structuredClone(batch), factsOf(structuredClone(p), structuredClone(claims)));
    expect(second).toEqual(first);
    const ids = [sentEvent(p).id, ...first.map((event) => event.id)];
    expect(new Set(ids).size).toBe(ids.length);
    expect(first.map((event) => event.type)).toEqual([
      'packet.opened',
      'packet.live',
      'wallet.credited',
      'packet.opened',
      'wallet.credited',
      'packet.opened',
      'wallet.credited',
      'packet.finished',
      'packet.expired',
    ]);
  });

  it('packet.sent carries the send as the contract lists it', () => {
    const p = packet({ payment: { provider: 'sandbox', orderId: 'ord_pk1' } });
    expect(sentEvent(p)).toEqual({
      id: 'evt_sent_pk1',
      type: 'packet.sent',
      packetId: 'pk1',
      recipients: ['alice'],
      createdAtMs: T0,
      data: { packetId: 'pk1', senderId: 'alice', type: 'group_lucky', targetId: 'g1', count: 3, total: '6.00', payWith: 'sandbox' },
    });
    expect(sentEvent(packet()).data.payWith).toBe('balance');
  });

  it('reads claims only for the packets that need them: one drained by a credited claim, or funded', () => {
    const counts = new Map([['drained', 2], ['half', 3], ['held', 2], ['funded', 2], ['expired', 2]]);
    const claimOf = (packetId: string, seq: number, held = false): ClaimEvent => ({ kind: 'claim', packetId, seq, userId: `u${seq}`, amountFen: 1, atMs: T0, ...(held ? { held: true as const } : {}) });
    const funded = payment(packet({ id: 'funded' }), 'funded', { claimsBefore: 1 });
    const batch: PacketEvent[] = [
      claimOf('drained', 2),
      claimOf('half', 1),
      claimOf('half', 2),
      claimOf('held', 2, true),
      funded,
      { kind: 'expire', packetId: 'expired', senderId: 'alice', refundFen: 1, atMs: T0 },
      claimOf('unknown', 1),
    ];
    expect(packetsNeedingClaims(batch, (packetId) => counts.get(packetId)).sort()).toEqual(['drained', 'funded']);
  });
});
