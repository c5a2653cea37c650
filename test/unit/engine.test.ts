// Proves the Engine's contract case by case: grab changes nothing; each open outcome (claimed, racing already_claimed, sold_out, expired with one exact refund, not_eligible, not_found); busy past the bounds of what waits on one packet (writes in flight, opens waiting for them) and in the process, with true answers for those within them and nobody paid twice; a failed append poisons the actor, fails what was queued behind it and the next open rebuilds from storage; idle eviction and re-activation; one load per concurrent activation.
import { describe, expect, it } from 'vitest';
import { allShares } from '../../src/domain/allocation.js';
import { UnavailableError } from '../../src/domain/errors.js';
import { DEFAULT_LIMITS, type Limits } from '../../src/domain/limits.js';
import type { Claim, Packet } from '../../src/domain/packet.js';
import { packetSeed } from '../../src/domain/random.js';
import { ManualClock } from '../../src/engine/clock.js';
import { Engine, OPENS_IN_FLIGHT_MAX, type EngineOptions, type PacketSource } from '../../src/engine/engine.js';
import { PACKET_WAITING_MAX, PacketActor } from '../../src/engine/packet-actor.js';
import type { StoredPacket } from '../../src/domain/packet.js';
import type { ClaimEvent, ExpireEvent, PacketEvent } from '../../src/log/events.js';
import { GroupCommitter } from '../../src/log/group-commit.js';
import { MemoryLog } from '../../src/log/memory-log.js';
import { SimLedger } from '../support/sim-ledger.js';
import { makePacket, SIM_SEED_SECRET, SIM_START_MS } from '../support/sim-packets.js';

const LIMITS: Limits = { ...DEFAULT_LIMITS, ttlMs: 60_000 };
const seedFor = (packetId: string) => packetSeed(SIM_SEED_SECRET, packetId);

interface PendingCommit {
  readonly event: PacketEvent;
  readonly onFailure: () => void;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/**
 * The engine's commit seam, by hand. 'auto' makes every event durable at once; 'manual' holds
 * them until the test says; 'never' never answers (a log that hangs). Failing follows the group
 * committer's contract: every onFailure first, synchronously, then the rejections.
 */
class Commits {
  readonly durable: PacketEvent[] = [];
  readonly pending: PendingCommit[] = [];
  calls = 0;
  constructor(public mode: 'auto' | 'manual' | 'never' = 'auto') {}

  readonly commit = (event: PacketEvent, onFailure: () => void): Promise<void> => {
    this.calls += 1;
    if (this.mode === 'auto') {
      this.durable.push(event);
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      if (this.mode === 'manual') this.pending.push({ event, onFailure, resolve, reject });
    });
  };

  succeedAll(): void {
    for (const pending of this.pending.splice(0)) {
      this.durable.push(pending.event);
      pending.resolve();
    }
  }

  /** Fails every held event; `between` runs after the onFailure notices and before any rejection. */
  failAll(between?: () => void): void {
    const failed = this.pending.splice(0);
    for (const pending of failed) pending.onFailure();
    between?.();
    const error = new UnavailableError('test: the log did not accept the write');
    for (const pending of failed) pending.reject(error);
  }

  claims(packetId: string): ClaimEvent[] {
    return claimsOf(this.durable, packetId);
  }

  expires(packetId: string): ExpireEvent[] {
    return expiresOf(this.durable, packetId);
  }
}

const claimsOf = (events: readonly PacketEvent[], packetId: string) =>
  events.filter((event): event is ClaimEvent => event.kind === 'claim' && event.packetId === packetId);
const expiresOf = (events: readonly PacketEvent[], packetId: string) =>
  events.filter((event): event is ExpireEvent => event.kind === 'expire' && event.packetId === packetId);

/** Storage as the ledger would rebuild it: the packet plus its durable claims and expiry; loads counted, and holdable. */
class Storage implements PacketSource {
  readonly packets = new Map<string, Packet>();
  loads = 0;
  hold: Promise<void> | undefined;
  fail: Error | undefined;
  /** `durable`: the events storage has applied (here: everything durable, applied at once). */
  constructor(private readonly durable: () => readonly PacketEvent[]) {}

  add(packet: Packet): Packet {
    this.packets.set(packet.id, packet);
    return packet;
  }

  async load(packetId: string): Promise<StoredPacket | null> {
    this.loads += 1;
    if (this.hold !== undefined) await this.hold;
    if (this.fail !== undefined) throw this.fail;
    const packet = this.packets.get(packetId);
    if (packet === undefined) return null;
    const events = this.durable();
    const claims: Claim[] = claimsOf(events, packetId).map((event) => ({
      packetId,
      seq: event.seq,
      userId: event.userId,
      amountFen: event.amountFen,
      claimedAtMs: event.atMs,
    }));
    return { packet, claims, expired: expiresOf(events, packetId).length > 0 };
  }
}

interface Rig {
  readonly engine: Engine;
  readonly clock: ManualClock;
  readonly commits: Commits;
  readonly storage: Storage;
  readonly decided: Claim[];
  readonly failed: Claim[];
}

function rig(options: { mode?: Commits['mode']; limits?: Limits; engine?: Partial<EngineOptions> } = {}): Rig {
  const clock = new ManualClock(SIM_START_MS);
  const commits = new Commits(options.mode);
  const storage = new Storage(() => commits.durable);
  const decided: Claim[] = [];
  const failed: Claim[] = [];
  const engine = new Engine({
    limits: options.limits ?? LIMITS,
    clock,
    seedFor,
    source: storage,
    commit: commits.commit,
    onClaimDecided: (claim) => decided.push(claim),
    onClaimFailed: (claim) => failed.push(claim),
    ...options.engine,
  });
  return { engine, clock, commits, storage, decided, failed };
}

const lucky = (id = 'lucky-1', count = 5, amountFen = 1_000) =>
  makePacket({ id, type: 'group_lucky', senderId: 'sender', count, amountFen }, LIMITS);
const fixed = (id = 'fixed-1', count = 3, amountFen = 500, members: string[] | null = null) =>
  makePacket({ id, type: 'group_fixed', senderId: 'sender', count, amountFen, members }, LIMITS);
const personal = (id = 'personal-1', amountFen = 888) =>
  makePacket({ id, type: 'personal', senderId: 'sender', targetId: 'receiver', amountFen }, LIMITS);

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));
const drainMicrotasks = async () => {
  for (let round = 0; round < 30; round += 1) await Promise.resolve();
};

/** Tracks a promise's state without awaiting it. */
function watch<Value>(promise: Promise<Value>): { state: 'pending' | 'resolved' | 'rejected'; value?: Value; error?: unknown } {
  const watched: { state: 'pending' | 'resolved' | 'rejected'; value?: Value; error?: unknown } = { state: 'pending' };
  promise.then(
    (value) => {
      watched.state = 'resolved';
      watched.value = value;
    },
    (error: unknown) => {
      watched.state = 'rejected';
      watched.error = error;
    },
  );
  return watched;
}

describe('Engine.grab', () => {
  it('never changes state: no write, no claim, the next open still gets share #1', async () => {
    const { engine, commits, storage, decided } = rig();
    const packet = storage.add(lucky());
    const before = await engine.view(packet.id);
    for (const userId of ['a', 'b', 'a', 'c']) expect(await engine.grab(packet.id, userId)).toEqual({ state: 'openable' });
    expect(commits.calls).toBe(0);
    expect(decided).toEqual([]);
    expect(await engine.view(packet.id)).toEqual(before);
    expect(storage.loads).toBe(1); // one activation, then memory

    const shares = allShares({ ...packet, seed: seedFor(packet.id) }, LIMITS);
    expect(await engine.open(packet.id, 'b')).toEqual({ state: 'claimed', amountFen: shares[0], seq: 1 });
    expect(await engine.grab(packet.id, 'b')).toEqual({ state: 'claimed', amountFen: shares[0] });
    expect(await engine.grab(packet.id, 'outsider-of-nothing')).toEqual({ state: 'openable' });
    expect(commits.calls).toBe(1);
  });

  it('reports sold_out, expired, not_eligible and not_found without writing', async () => {
    const { engine, clock, commits, storage } = rig();
    const soldOut = storage.add(fixed('fixed-sold', 1));
    await engine.open(soldOut.id, 'a');
    const calls = commits.calls;
    expect(await engine.grab(soldOut.id, 'b')).toEqual({ state: 'sold_out' });
    expect(await engine.grab(storage.add(personal()).id, 'stranger')).toEqual({ state: 'not_eligible' });
    expect(await engine.grab('missing', 'a')).toEqual({ state: 'not_found' });
    const late = storage.add(fixed('fixed-late'));
    clock.advance(LIMITS.ttlMs);
    expect(await engine.grab(late.id, 'a')).toEqual({ state: 'expired' });
    expect(commits.calls).toBe(calls); // grab at the deadline does not expire the packet either
    expect((await engine.view(late.id)) as { status: string }).toMatchObject({ status: 'live' });
  });
});

describe('Engine.open outcomes', () => {
  it('claimed: hands out the allocation in open order, and only once the event is durable', async () => {
    const { engine, commits, storage, decided } = rig({ mode: 'manual' });
    const packet = storage.add(lucky('lucky-order', 4, 4_321));
    const shares = allShares({ ...packet, seed: seedFor(packet.id) }, LIMITS);
    const opens = ['a', 'b', 'c', 'd'].map((userId) => watch(engine.open(packet.id, userId)));
    await drainMicrotasks();
    expect(decided.map((claim) => [claim.userId, claim.seq, claim.amountFen])).toEqual([
      ['a', 1, shares[0]],
      ['b', 2, shares[1]],
      ['c', 3, shares[2]],
      ['d', 4, shares[3]],
    ]);
    expect(opens.map((open) => open.state)).toEqual(['pending', 'pending', 'pending', 'pending']);
    commits.succeedAll();
    await drainMicrotasks();
    expect(opens.map((open) => open.value)).toEqual(shares.map((amountFen, index) => ({ state: 'claimed', amountFen, seq: index + 1 })));
    expect(shares.reduce((sum, share) => sum + share, 0)).toBe(packet.totalFen);
  });

  it('claimed: fixed shares are equal, a personal packet pays its one receiver', async () => {
    const { engine, storage } = rig();
    const group = storage.add(fixed('fixed-equal', 3, 700));
    for (const [index, userId] of ['a', 'b', 'c'].entries()) {
      expect(await engine.open(group.id, userId)).toEqual({ state: 'claimed', amountFen: 700, seq: index + 1 });
    }
    const single = storage.add(personal('personal-pay', 888));
    expect(await engine.open(single.id, 'receiver')).toEqual({ state: 'claimed', amountFen: 888, seq: 1 });
  });

  it('already_claimed: two opens by one user in the same tick give one claim and one already_claimed with the same amount', async () => {
    const { engine, commits, storage } = rig({ mode: 'manual' });
    const packet = storage.add(lucky('lucky-race', 3, 900));
    const first = watch(engine.open(packet.id, 'a'));
    const second = watch(engine.open(packet.id, 'a'));
    await drainMicrotasks();
    // The second waits for the first one's write: "already claimed" must already be true when said.
    expect([first.state, second.state]).toEqual(['pending', 'pending']);
    expect(commits.pending).toHaveLength(1);
    commits.succeedAll();
    await drainMicrotasks();
    const claimed = first.value as { state: string; amountFen: number; seq: number };
    expect(claimed.state).toBe('claimed');
    expect(second.value).toEqual({ state: 'already_claimed', amountFen: claimed.amountFen, seq: 1 });
    expect(commits.claims(packet.id)).toHaveLength(1);
    // Later, and after a rebuild from storage, the same answer.
    expect(await engine.open(packet.id, 'a')).toEqual({ state: 'already_claimed', amountFen: claimed.amountFen, seq: 1 });
    expect(engine.evictIdle(0)).toBe(1);
    expect(await engine.open(packet.id, 'a')).toEqual({ state: 'already_claimed', amountFen: claimed.amountFen, seq: 1 });
  });

  it('already_claimed racing a failed write fails too, rather than confirm a claim that is not there', async () => {
    const { engine, commits, storage } = rig({ mode: 'manual' });
    const packet = storage.add(lucky('lucky-race-fail'));
    const first = watch(engine.open(packet.id, 'a'));
    const second = watch(engine.open(packet.id, 'a'));
    await drainMicrotasks();
    commits.failAll();
    await drainMicrotasks();
    expect(first.state).toBe('rejected');
    expect(second.state).toBe('rejected');
    expect(second.error).toBeInstanceOf(UnavailableError);
  });

  it('sold_out: once every share is claimed — and only once the last share is durable', async () => {
    const { engine, commits, storage } = rig({ mode: 'manual' });
    const packet = storage.add(fixed('fixed-two', 2, 100));
    const a = watch(engine.open(packet.id, 'a'));
    const b = watch(engine.open(packet.id, 'b'));
    const c = watch(engine.open(packet.id, 'c'));
    await drainMicrotasks();
    expect(commits.pending).toHaveLength(2);
    expect(c.state).toBe('pending'); // not "sold out" while the shares could still come back
    commits.succeedAll();
    await drainMicrotasks();
    expect([a.value, b.value, c.value]).toEqual([
      { state: 'claimed', amountFen: 100, seq: 1 },
      { state: 'claimed', amountFen: 100, seq: 2 },
      { state: 'sold_out' },
    ]);
    expect(await engine.open(packet.id, 'd')).toEqual({ state: 'sold_out' });
    expect(await engine.open(packet.id, 'a')).toEqual({ state: 'already_claimed', amountFen: 100, seq: 1 });
    expect(commits.calls).toBe(2);
  });

  it('sold_out is never said when the last shares fail: that open fails, and the shares are there after the rebuild', async () => {
    const { engine, commits, storage } = rig({ mode: 'manual' });
    const packet = storage.add(fixed('fixed-sold-fail', 2, 100));
    const a = watch(engine.open(packet.id, 'a'));
    const b = watch(engine.open(packet.id, 'b'));
    const c = watch(engine.open(packet.id, 'c'));
    await drainMicrotasks();
    commits.failAll();
    await drainMicrotasks();
    expect([a.state, b.state, c.state]).toEqual(['rejected', 'rejected', 'rejected']);
    expect(c.error).toBeInstanceOf(UnavailableError);
    commits.mode = 'auto';
    expect(await engine.open(packet.id, 'c')).toEqual({ state: 'claimed', amountFen: 100, seq: 1 });
  });

  it('expired: at and after expiresAtMs, with exactly one expire event refunding the exact remainder', async () => {
    const { engine, clock, commits, storage } = rig();
    const packet = storage.add(lucky('lucky-expiry', 5, 2_000));
    const first = await engine.open(packet.id, 'a');
    expect(first.state).toBe('claimed');
    clock.advance(LIMITS.ttlMs - 1);
    const second = await engine.open(packet.id, 'b'); // one ms before the deadline: still open
    expect(second.state).toBe('claimed');
    clock.advance(1); // exactly expiresAtMs
    expect(clock.now()).toBe(packet.expiresAtMs);
    const atDeadline = await Promise.all(['c', 'd', 'e'].map((userId) => engine.open(packet.id, userId)));
    expect(atDeadline).toEqual([{ state: 'expired' }, { state: 'expired' }, { state: 'expired' }]);
    clock.advance(5_000);
    expect(await engine.open(packet.id, 'c')).toEqual({ state: 'expired' });
    await engine.expire(packet.id);
    // A claimer still hears about their claim after expiry.
    expect(await engine.open(packet.id, 'a')).toEqual(first.state === 'claimed' ? { ...first, state: 'already_claimed' } : first);

    const claimedFen = commits.claims(packet.id).reduce((sum, claim) => sum + claim.amountFen, 0);
    expect(commits.expires(packet.id)).toEqual([
      { kind: 'expire', packetId: packet.id, senderId: 'sender', refundFen: packet.totalFen - claimedFen, atMs: packet.expiresAtMs },
    ]);
    expect((await engine.view(packet.id)) as { status: string }).toMatchObject({ status: 'expired' });
    // And after a rebuild, still exactly one.
    engine.evictIdle(0);
    await engine.expire(packet.id);
    expect(await engine.open(packet.id, 'f')).toEqual({ state: 'expired' });
    expect(commits.expires(packet.id)).toHaveLength(1);
  });

  it('expired: the refund counts claims decided but still in flight', async () => {
    const { engine, clock, commits, storage } = rig({ mode: 'manual' });
    const packet = storage.add(fixed('fixed-inflight', 4, 250));
    const claim = watch(engine.open(packet.id, 'a'));
    await drainMicrotasks();
    clock.advance(LIMITS.ttlMs);
    const expiry = watch(engine.expire(packet.id));
    await drainMicrotasks();
    expect(commits.pending.map((pending) => pending.event.kind)).toEqual(['claim', 'expire']);
    commits.succeedAll();
    await drainMicrotasks();
    expect(claim.value).toEqual({ state: 'claimed', amountFen: 250, seq: 1 });
    expect(expiry.state).toBe('resolved');
    expect(commits.expires(packet.id)[0]!.refundFen).toBe(750);
  });

  it('expire is a no-op before the deadline and for a finished packet', async () => {
    const { engine, clock, commits, storage } = rig();
    const live = storage.add(fixed('fixed-early'));
    await engine.expire(live.id);
    const finished = storage.add(fixed('fixed-done', 1));
    await engine.open(finished.id, 'a');
    clock.advance(LIMITS.ttlMs);
    await engine.expire(finished.id);
    expect(commits.durable.filter((event) => event.kind === 'expire')).toEqual([]);
    await engine.expire('missing');
  });

  it('not_eligible: the sender or a stranger on a personal packet, a non-member on a members-only packet; nothing written', async () => {
    const { engine, commits, storage } = rig();
    const single = storage.add(personal('personal-eligible'));
    expect(await engine.open(single.id, 'sender')).toEqual({ state: 'not_eligible' });
    expect(await engine.open(single.id, 'stranger')).toEqual({ state: 'not_eligible' });
    const members = storage.add(fixed('fixed-members', 2, 100, ['m1', 'm2', 'm3']));
    expect(await engine.open(members.id, 'outsider')).toEqual({ state: 'not_eligible' });
    expect(commits.calls).toBe(0);
    expect(await engine.open(members.id, 'm2')).toEqual({ state: 'claimed', amountFen: 100, seq: 1 });
  });

  it('not_found: an unknown packet, asked again, is looked up again', async () => {
    const { engine, storage } = rig();
    expect(await engine.open('nope', 'a')).toEqual({ state: 'not_found' });
    expect(await engine.view('nope')).toBeNull();
    expect(engine.stats.actors).toBe(0);
    storage.add(fixed('nope'));
    expect(await engine.open('nope', 'a')).toEqual({ state: 'claimed', amountFen: 500, seq: 1 });
  });
});

describe('load shedding', () => {
  it('answers busy at once when a packet has PACKET_WAITING_MAX writes in flight', async () => {
    const limits: Limits = { ...LIMITS, countMax: PACKET_WAITING_MAX + 10 };
    const { engine, commits, storage } = rig({ mode: 'never', limits });
    const packet = storage.add(
      makePacket({ id: 'fixed-huge', type: 'group_fixed', senderId: 'sender', count: PACKET_WAITING_MAX + 10, amountFen: 1 }, limits),
    );
    const opens = Array.from({ length: PACKET_WAITING_MAX }, (_, index) => watch(engine.open(packet.id, `user-${index}`)));
    await drainMicrotasks();
    expect(commits.calls).toBe(PACKET_WAITING_MAX);
    const overflow = watch(engine.open(packet.id, 'one-too-many'));
    await drainMicrotasks(); // "at once": no write had to finish for this answer
    expect(overflow.value).toEqual({ state: 'busy', retryAfterMs: expect.any(Number) });
    expect(commits.calls).toBe(PACKET_WAITING_MAX); // nothing decided for the busy one
    // A user holding a share whose write is in flight would wait for it too: past the bound, busy.
    const again = watch(engine.open(packet.id, 'user-0'));
    await drainMicrotasks();
    expect(again.value).toEqual({ state: 'busy', retryAfterMs: expect.any(Number) });
    expect(opens.every((open) => open.state === 'pending')).toBe(true);
  });

  it('a crowd on one hot packet whose write is held: busy past PACKET_WAITING_MAX, true answers within it, nobody paid twice', async () => {
    const { engine, commits, storage } = rig({ mode: 'manual' });
    const packet = storage.add(lucky('hot-1', 100, 10_000));
    engine.adopt({ packet, claims: [], expired: false });
    const crowd = Array.from({ length: 3_000 }, (_, index) => `crowd-${index}`);
    const openOf = (userId: string) => ({ userId, open: watch(engine.open(packet.id, userId)) });
    const claimers = crowd.slice(0, 100).map(openOf); // every share decided, every write held
    const again = crowd.slice(0, 99).map(openOf); // racing second opens: they wait for the first one's write
    const rest = crowd.slice(100).map(openOf); // "sold out" only once the last shares are durable
    await drainMicrotasks();
    const all = [...claimers, ...again, ...rest];
    const pending = all.filter((entry) => entry.open.state === 'pending');
    const busy = all.filter((entry) => entry.open.state === 'resolved');
    expect(commits.pending).toHaveLength(100);
    expect(pending).toHaveLength(PACKET_WAITING_MAX); // 100 writes + the opens waiting on them
    expect(claimers.every((entry) => entry.open.state === 'pending')).toBe(true);
    expect(again.every((entry) => entry.open.state === 'pending')).toBe(true);
    expect(busy).toHaveLength(all.length - PACKET_WAITING_MAX);
    for (const entry of busy) expect(entry.open.value).toEqual({ state: 'busy', retryAfterMs: expect.any(Number) });
    expect(engine.stats.opensInFlight).toBe(PACKET_WAITING_MAX);

    commits.succeedAll();
    await drainMicrotasks();
    expect(pending.every((entry) => entry.open.state === 'resolved')).toBe(true);
    const claims = commits.claims(packet.id);
    expect(claims).toHaveLength(100);
    expect(new Set(claims.map((claim) => claim.userId)).size).toBe(100); // nobody paid twice
    expect(claims.reduce((sum, claim) => sum + claim.amountFen, 0)).toBe(10_000);
    const claimOf = new Map(claims.map((claim) => [claim.userId, claim]));
    for (const entry of claimers) {
      const claim = claimOf.get(entry.userId)!;
      expect(entry.open.value).toEqual({ state: 'claimed', amountFen: claim.amountFen, seq: claim.seq });
    }
    for (const entry of again) {
      const claim = claimOf.get(entry.userId)!;
      expect(entry.open.value).toEqual({ state: 'already_claimed', amountFen: claim.amountFen, seq: claim.seq });
    }
    for (const entry of rest.filter((entry) => pending.includes(entry))) expect(entry.open.value).toEqual({ state: 'sold_out' });
    // Once durable, nothing waits: a shed opener retrying hears the final answer at once.
    const retry = engine.open(packet.id, busy[busy.length - 1]!.userId);
    await drainMicrotasks();
    expect(await retry).toEqual({ state: 'sold_out' });
    expect(commits.calls).toBe(100);
    expect(engine.stats.opensInFlight).toBe(0);
  });

  it('sheds waiting opens past OPENS_IN_FLIGHT_MAX across packets, even where each packet is within its own bound', async () => {
    const { engine, commits, storage } = rig({ mode: 'manual' });
    const packets = Array.from({ length: Math.ceil(OPENS_IN_FLIGHT_MAX / PACKET_WAITING_MAX) + 2 }, (_, index) => storage.add(lucky(`hot-${index}`, 100, 10_000)));
    for (const packet of packets) engine.adopt({ packet, claims: [], expired: false });
    const perPacket = PACKET_WAITING_MAX - 24; // under each packet's bound
    const outcomes = packets.flatMap((packet) => Array.from({ length: perPacket }, (_, index) => watch(engine.open(packet.id, `user-${index}`))));
    await drainMicrotasks();
    const busy = outcomes.filter((outcome) => outcome.value?.state === 'busy').length;
    expect(outcomes.filter((outcome) => outcome.state === 'pending')).toHaveLength(OPENS_IN_FLIGHT_MAX);
    expect(busy).toBe(outcomes.length - OPENS_IN_FLIGHT_MAX);
    // An answer that is already final is still given at the bound: not_eligible waits for nothing.
    const personalPacket = storage.add(personal('personal-at-bound'));
    engine.adopt({ packet: personalPacket, claims: [], expired: false });
    expect(await engine.open(personalPacket.id, 'stranger')).toEqual({ state: 'not_eligible' });
    commits.succeedAll();
    await drainMicrotasks();
    expect(engine.stats.opensInFlight).toBe(0);
    for (const packet of packets) expect(new Set(commits.claims(packet.id).map((claim) => claim.userId)).size).toBe(commits.claims(packet.id).length);
  });

  it('answers busy at once past OPENS_IN_FLIGHT_MAX opens in this process', async () => {
    const { engine, storage } = rig();
    storage.add(fixed('fixed-cold'));
    let release: () => void = () => {};
    storage.hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    const opens = Array.from({ length: OPENS_IN_FLIGHT_MAX }, (_, index) => engine.open('fixed-cold', `user-${index}`));
    expect(engine.stats.opensInFlight).toBe(OPENS_IN_FLIGHT_MAX);
    const busy = watch(engine.open('other-packet', 'late'));
    await drainMicrotasks();
    expect(busy.value).toEqual({ state: 'busy', retryAfterMs: expect.any(Number) });
    expect(storage.loads).toBe(1); // all of them wait on one activation
    release();
    const outcomes = await Promise.all(opens);
    expect(outcomes.filter((outcome) => outcome.state === 'claimed')).toHaveLength(3);
    // Once the packet is here, the crowd behind its last shares is bounded like any other.
    const soldOut = outcomes.filter((outcome) => outcome.state === 'sold_out').length;
    expect(soldOut).toBeGreaterThan(0);
    expect(soldOut + outcomes.filter((outcome) => outcome.state === 'busy').length).toBe(OPENS_IN_FLIGHT_MAX - 3);
    expect(engine.stats.opensInFlight).toBe(0);
    expect((await engine.open('fixed-cold', 'user-0')).state).toBe('already_claimed');
  });
});

describe('a failed append', () => {
  it('poisons the actor in the synchronous failure notice: no decision can slip in before the rejection arrives', async () => {
    const commits = new Commits('manual');
    const packet = lucky('lucky-notice');
    const decided: Claim[] = [];
    const actor = new PacketActor(
      { packet, claims: [], expired: false },
      { limits: LIMITS, seedFor, commit: commits.commit, onClaimDecided: (claim) => decided.push(claim) },
      SIM_START_MS,
    );
    const a = watch(Promise.resolve(actor.open('a', SIM_START_MS)));
    let slipped: ReturnType<typeof watch> | undefined;
    commits.failAll(() => {
      expect(actor.poisoned).toBe(true);
      slipped = watch(Promise.resolve(actor.open('b', SIM_START_MS)));
    });
    await drainMicrotasks();
    expect(a.error).toBeInstanceOf(UnavailableError);
    expect(slipped!.error).toBeInstanceOf(UnavailableError);
    expect(decided.map((claim) => claim.userId)).toEqual(['a']);
    expect(actor.pendingWrites).toBe(0);
  });

  it('rejects the failing opens and everything queued behind them, reports the claims as failed, and the next open rebuilds from storage', async () => {
    const log = new MemoryLog();
    const committer = new GroupCommitter(log);
    const clock = new ManualClock(SIM_START_MS);
    const storage = new Storage(() => log.events);
    const failed: Claim[] = [];
    const engine = new Engine({
      limits: LIMITS,
      clock,
      seedFor,
      source: storage,
      commit: (event, onFailure) => committer.submit(event, onFailure),
      onClaimFailed: (claim) => failed.push(claim),
    });
    const packet = storage.add(lucky('lucky-poison', 6, 3_000));
    const shares = allShares({ ...packet, seed: seedFor(packet.id) }, LIMITS);
    expect(await engine.open(packet.id, 'a')).toEqual({ state: 'claimed', amountFen: shares[0], seq: 1 });
    expect(storage.loads).toBe(1);

    log.failAppends = true;
    const b = watch(engine.open(packet.id, 'b'));
    const c = watch(engine.open(packet.id, 'c'));
    await drainMicrotasks();
    // Decided on top of b and c before their append fails: queued behind them, failed with them.
    const d = watch(engine.open(packet.id, 'd'));
    await nextTick();
    await drainMicrotasks();
    for (const open of [b, c, d]) {
      expect(open.state).toBe('rejected');
      expect(open.error).toBeInstanceOf(UnavailableError);
    }
    expect(failed.map((claim) => [claim.userId, claim.seq])).toEqual([
      ['b', 2],
      ['c', 3],
      ['d', 4],
    ]);
    expect(log.events).toHaveLength(1);

    log.failAppends = false;
    // The poisoned actor is dropped; storage knows only a's claim, so b's retry gets share #2 again.
    expect(await engine.open(packet.id, 'b')).toEqual({ state: 'claimed', amountFen: shares[1], seq: 2 });
    expect(storage.loads).toBe(2);
    expect(await engine.open(packet.id, 'a')).toEqual({ state: 'already_claimed', amountFen: shares[0], seq: 1 });
    expect(await engine.open(packet.id, 'c')).toEqual({ state: 'claimed', amountFen: shares[2], seq: 3 });
  });

  it('turns away an open that arrives between the failure notice and the rejections, deciding nothing', async () => {
    const { engine, commits, storage, decided } = rig({ mode: 'manual' });
    const packet = storage.add(lucky('lucky-unwind'));
    const a = watch(engine.open(packet.id, 'a'));
    await drainMicrotasks();
    let sneaky: ReturnType<typeof watch> | undefined;
    commits.failAll(() => {
      sneaky = watch(engine.open(packet.id, 'b'));
    });
    await drainMicrotasks();
    expect(a.state).toBe('rejected');
    expect(sneaky!.state).toBe('rejected');
    expect(sneaky!.error).toBeInstanceOf(UnavailableError);
    expect(decided.map((claim) => claim.userId)).toEqual(['a']);
    expect(storage.loads).toBe(1);
  });

  it('fails an expiry the same way: rejected, and retried on a rebuilt actor with the same refund', async () => {
    const { engine, clock, commits, storage } = rig({ mode: 'manual' });
    const packet = storage.add(fixed('fixed-expire-fail', 3, 100));
    const claim = watch(engine.open(packet.id, 'a'));
    await drainMicrotasks();
    commits.succeedAll();
    await drainMicrotasks();
    expect(claim.state).toBe('resolved');
    clock.advance(LIMITS.ttlMs);
    const first = watch(engine.expire(packet.id));
    await drainMicrotasks();
    commits.failAll();
    await drainMicrotasks();
    expect(first.error).toBeInstanceOf(UnavailableError);
    commits.mode = 'auto';
    await engine.expire(packet.id);
    expect(storage.loads).toBe(2);
    expect(commits.expires(packet.id).map((event) => event.refundFen)).toEqual([200]);
  });

  it('written but unacknowledged: the open fails, and the retry finds the claim in storage', async () => {
    const log = new MemoryLog();
    const ledger = new SimLedger(log);
    await ledger.start();
    try {
      let acknowledgementLost = false;
      const committer = new GroupCommitter({
        name: 'lossy',
        append: async (events) => {
          await log.append(events);
          if (acknowledgementLost) throw new Error('timeout after the write');
        },
      });
      const engine = new Engine({
        limits: LIMITS,
        clock: new ManualClock(SIM_START_MS),
        seedFor,
        source: ledger,
        commit: (event, onFailure) => committer.submit(event, onFailure),
      });
      ledger.deposit('sender', 10_000, 'seed');
      const packet = lucky('lucky-lost-ack', 3, 900);
      expect(ledger.send(packet)).toBe('sent');
      acknowledgementLost = true;
      await expect(engine.open(packet.id, 'a')).rejects.toBeInstanceOf(UnavailableError);
      acknowledgementLost = false;
      const retry = await engine.open(packet.id, 'a');
      expect(retry).toEqual({ state: 'already_claimed', amountFen: allShares({ ...packet, seed: seedFor(packet.id) }, LIMITS)[0], seq: 1 });
      expect((await engine.open(packet.id, 'b')).state).toBe('claimed');
      expect(ledger.violations).toEqual([]);
    } finally {
      await ledger.stop();
    }
  });
});

describe('activation and eviction', () => {
  it('evicts only actors idle for idleMs with nothing in flight, and re-activates them from storage', async () => {
    const { engine, clock, commits, storage } = rig({ mode: 'manual' });
    const quiet = storage.add(fixed('fixed-quiet', 3, 100));
    const busy = storage.add(fixed('fixed-busy', 3, 100));
    const claim = watch(engine.open(quiet.id, 'a'));
    await drainMicrotasks();
    commits.succeedAll();
    await drainMicrotasks();
    expect(claim.state).toBe('resolved');
    const inFlight = watch(engine.open(busy.id, 'a'));
    await drainMicrotasks();
    expect(engine.stats.actors).toBe(2);

    clock.advance(999);
    expect(engine.evictIdle(1_000)).toBe(0); // not idle long enough
    clock.advance(1);
    expect(engine.evictIdle(1_000)).toBe(1); // the quiet one; the busy one has a write in flight
    expect(engine.stats.actors).toBe(1);

    commits.succeedAll();
    await drainMicrotasks();
    expect(inFlight.value).toEqual({ state: 'claimed', amountFen: 100, seq: 1 });
    commits.mode = 'auto';
    expect(await engine.open(quiet.id, 'a')).toEqual({ state: 'already_claimed', amountFen: 100, seq: 1 });
    expect(await engine.open(quiet.id, 'b')).toEqual({ state: 'claimed', amountFen: 100, seq: 2 });
    expect(storage.loads).toBe(3);
    expect(engine.evictIdle(0)).toBe(2);
    expect(engine.stats.actors).toBe(0);
  });

  it('never decides on an actor evicted between its lookup and its use', async () => {
    // The eviction lands after 0, 1, 2, … microtasks of the first open of a cold packet: one of
    // them falls between its (asynchronous) activation and its use. A second open then activates
    // a fresh actor from storage, which cannot know a claim still in flight — only one actor may
    // be deciding. (A warm actor is looked up and used in one synchronous step: no window at all.)
    let evictions = 0;
    for (let delay = 0; delay < 16; delay += 1) {
      const { engine, commits, storage } = rig({ mode: 'manual' });
      const packet = storage.add(fixed(`fixed-evict-race-${delay}`, 3, 100));
      const first = watch(engine.open(packet.id, 'a'));
      for (let index = 0; index < delay; index += 1) await Promise.resolve();
      evictions += engine.evictIdle(0);
      const second = watch(engine.open(packet.id, 'b'));
      await drainMicrotasks();
      commits.succeedAll();
      await drainMicrotasks();
      const outcomes = [first.value, second.value] as { state: string }[];
      expect(outcomes.map((outcome) => outcome?.state), `delay ${delay}`).toEqual(['claimed', 'claimed']);
      expect(commits.claims(packet.id).map((event) => event.seq).sort(), `delay ${delay}: one seq, one claim`).toEqual([1, 2]);
      expect(storage.loads, `delay ${delay}`).toBeLessThanOrEqual(2);
    }
    expect(evictions).toBeGreaterThan(0);
  });

  it('dropWhere (its slot changed hands) drops matching actors at once, and an activation that was loading answers unavailable, never not_found', async () => {
    const { engine, commits, storage } = rig({ mode: 'manual' });
    const warm = storage.add(fixed('fixed-drop-warm', 3, 100));
    const other = storage.add(fixed('other-drop', 3, 100));
    const cold = storage.add(fixed('fixed-drop-cold', 3, 100));
    commits.mode = 'auto';
    await engine.open(warm.id, 'a');
    await engine.open(other.id, 'a');
    expect(engine.stats.actors).toBe(2);
    let release: () => void = () => {};
    storage.hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    const loading = watch(engine.open(cold.id, 'b'));
    await drainMicrotasks();
    expect(engine.dropWhere((packetId) => packetId.startsWith('fixed-drop'))).toBe(1);
    expect(engine.stats.actors).toBe(1); // only the other packet's actor is left
    release();
    await drainMicrotasks();
    expect(loading.state).toBe('rejected');
    expect(loading.error).toBeInstanceOf(UnavailableError);
    // The next request rebuilds from storage and knows the claim made before the drop.
    storage.hold = undefined;
    expect(await engine.open(warm.id, 'a')).toEqual({ state: 'already_claimed', amountFen: 100, seq: 1 });
    expect(await engine.open(cold.id, 'b')).toMatchObject({ state: 'claimed', seq: 1 });
  });

  it('loads a cold packet once for all the opens, grabs and views that arrive together', async () => {
    const { engine, storage } = rig();
    storage.add(fixed('fixed-crowd', 5, 100));
    let release: () => void = () => {};
    storage.hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    // Waiters resume in arrival order: the grab and the view see the packet before the opens.
    const grab = engine.grab('fixed-crowd', 'watcher');
    const view = engine.view('fixed-crowd');
    const opens = Array.from({ length: 8 }, (_, index) => engine.open('fixed-crowd', `user-${index}`));
    expect(engine.stats.activationsInFlight).toBe(1);
    release();
    const outcomes = await Promise.all(opens);
    expect(storage.loads).toBe(1);
    expect(outcomes.map((outcome) => outcome.state)).toEqual(['claimed', 'claimed', 'claimed', 'claimed', 'claimed', 'sold_out', 'sold_out', 'sold_out']);
    expect((await grab).state).toBe('openable');
    expect(await view).toMatchObject({ status: 'live', claims: [] });
    expect(engine.stats.activationsInFlight).toBe(0);
  });

  it('fails every waiter of a failed load with UnavailableError, and loads again next time', async () => {
    const { engine, storage } = rig();
    storage.add(fixed('fixed-load-fail'));
    storage.fail = new Error('database unreachable');
    const outcomes = await Promise.allSettled([engine.open('fixed-load-fail', 'a'), engine.open('fixed-load-fail', 'b'), engine.grab('fixed-load-fail', 'c')]);
    expect(storage.loads).toBe(1);
    for (const outcome of outcomes) {
      expect(outcome.status).toBe('rejected');
      const reason = (outcome as PromiseRejectedResult).reason as UnavailableError;
      expect(reason).toBeInstanceOf(UnavailableError);
      expect(reason.cause).toBe(storage.fail);
    }
    storage.fail = undefined;
    expect(await engine.open('fixed-load-fail', 'a')).toEqual({ state: 'claimed', amountFen: 500, seq: 1 });
    expect(storage.loads).toBe(2);
  });

  it('adopts a new packet without a read, and adopting twice keeps the first actor', async () => {
    const { engine, storage } = rig();
    const packet = fixed('fixed-adopted', 2, 100);
    engine.adopt({ packet, claims: [], expired: false });
    expect(await engine.open(packet.id, 'a')).toEqual({ state: 'claimed', amountFen: 100, seq: 1 });
    engine.adopt({ packet, claims: [], expired: false });
    expect(await engine.open(packet.id, 'b')).toEqual({ state: 'claimed', amountFen: 100, seq: 2 });
    expect(storage.loads).toBe(0);
  });
});
