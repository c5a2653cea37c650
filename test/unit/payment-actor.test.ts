// A provider-paid packet's actor: nothing opens before the payment is returned or confirmed;
// an open while awaiting funds is claimed and written as held; the funding is written in order
// with the opens (claims before it held, after it not); a cancelled packet opens nothing more and
// makes one late credit; a repeated signal waits for the change it repeats; the lifetime starts
// when the packet first becomes openable.
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, type Limits } from '../../src/domain/limits.js';
import type { Packet, StoredPacket } from '../../src/domain/packet.js';
import { orderIdOf } from '../../src/domain/payment.js';
import { packetSeed } from '../../src/domain/random.js';
import { PacketActor } from '../../src/engine/packet-actor.js';
import type { PacketEvent } from '../../src/log/events.js';
import { makePacket, SIM_SEED_SECRET, SIM_START_MS } from '../support/sim-packets.js';

const LIMITS: Limits = { ...DEFAULT_LIMITS, ttlMs: 60_000 };

function providerPacket(count = 3, totalFen = 300): StoredPacket {
  const base: Packet = makePacket({ id: 'p_pay', type: 'group_lucky', senderId: 'alice', count, amountFen: totalFen });
  return {
    packet: { ...base, payment: { provider: 'sandbox', orderId: orderIdOf(base.id) } },
    claims: [],
    expired: false,
    payment: { phase: 'pending_payment', lateCredited: false },
  };
}

function actorOf(stored: StoredPacket, manual = false) {
  const durable: PacketEvent[] = [];
  const held: (() => void)[] = [];
  const actor = new PacketActor(
    stored,
    {
      limits: LIMITS,
      seedFor: (packetId) => packetSeed(SIM_SEED_SECRET, packetId),
      commit: (event) => {
        if (!manual) {
          durable.push(event);
          return Promise.resolve();
        }
        return new Promise<void>((resolve) => held.push(() => (durable.push(event), resolve())));
      },
    },
    SIM_START_MS,
  );
  return { actor, durable, release: () => held.splice(0).forEach((done) => done()) };
}

describe('a provider-paid packet in its actor', () => {
  it('opens nothing while pending_payment, then holds the claims decided while awaiting funds, and credits the ones after funding as usual', async () => {
    const { actor, durable } = actorOf(providerPacket());
    expect(actor.grab('bob', SIM_START_MS)).toEqual({ state: 'pending_payment' });
    expect(await actor.open('bob', SIM_START_MS)).toEqual({ state: 'pending_payment' });
    expect(durable).toEqual([]);

    const returnedAt = SIM_START_MS + 5_000;
    expect((await actor.settlePayment('returned_success', returnedAt)).phase).toBe('awaiting_funds');
    expect(actor.packet.liveAtMs).toBe(returnedAt);
    expect(actor.packet.expiresAtMs).toBe(returnedAt + LIMITS.ttlMs);
    expect(actor.status).toBe('awaiting_funds');
    expect(actor.grab('bob', returnedAt)).toEqual({ state: 'openable' });

    const bob = await actor.open('bob', returnedAt + 1);
    expect(bob).toMatchObject({ state: 'claimed', seq: 1 });
    expect((await actor.settlePayment('paid', returnedAt + 2)).phase).toBe('funded');
    const carol = await actor.open('carol', returnedAt + 3);
    expect(carol).toMatchObject({ state: 'claimed', seq: 2 });

    expect(durable.map((event) => (event.kind === 'payment' ? event.change : `${event.kind}${'held' in event && event.held ? ' held' : ''}`))).toEqual([
      'awaiting_funds',
      'claim held',
      'funded',
      'claim',
    ]);
    const funding = durable[2]!;
    expect(funding).toMatchObject({ kind: 'payment', change: 'funded', amountFen: 300, liveAtMs: returnedAt, expiresAtMs: returnedAt + LIMITS.ttlMs });
    expect(actor.status).toBe('live');
  });

  it('goes live on a notification that comes before the return, starting its lifetime then', async () => {
    const { actor, durable } = actorOf(providerPacket());
    const paidAt = SIM_START_MS + 7_000;
    expect((await actor.settlePayment('paid', paidAt)).change).toEqual({ kind: 'funded' });
    expect(actor.packet.expiresAtMs).toBe(paidAt + LIMITS.ttlMs);
    // The return forwarded afterwards repeats what is known: nothing is written.
    expect((await actor.settlePayment('returned_success', paidAt + 1)).change).toEqual({ kind: 'none', why: 'repeat' });
    expect(durable.map((event) => event.kind === 'payment' && event.change)).toEqual(['funded']);
  });

  it('is sold out, not finished, when every share is held: it finishes only with its money', async () => {
    const { actor } = actorOf(providerPacket(2, 200));
    await actor.settlePayment('returned_success', SIM_START_MS);
    await actor.open('bob', SIM_START_MS);
    await actor.open('carol', SIM_START_MS);
    expect(actor.status).toBe('awaiting_funds');
    expect(await actor.open('dave', SIM_START_MS)).toEqual({ state: 'sold_out' });
    expect(actor.grab('dave', SIM_START_MS)).toEqual({ state: 'sold_out' });
    await actor.settlePayment('paid', SIM_START_MS + 1);
    expect(actor.status).toBe('finished');
  });

  it('once cancelled opens nothing, keeps the void claims, and credits money that comes late exactly once', async () => {
    const { actor, durable } = actorOf(providerPacket());
    await actor.settlePayment('returned_success', SIM_START_MS);
    await actor.open('bob', SIM_START_MS);
    expect((await actor.settlePayment('failed', SIM_START_MS + 1)).change).toEqual({ kind: 'cancelled', reason: 'payment_failed' });
    expect(await actor.open('carol', SIM_START_MS + 2)).toEqual({ state: 'cancelled' });
    expect(await actor.open('bob', SIM_START_MS + 2)).toEqual({ state: 'cancelled' });
    expect(actor.grab('carol', SIM_START_MS + 2)).toEqual({ state: 'cancelled' });
    expect((await actor.settlePayment('paid', SIM_START_MS + 3)).change).toEqual({ kind: 'late_credit' });
    expect((await actor.settlePayment('paid', SIM_START_MS + 4)).change).toEqual({ kind: 'none', why: 'already_credited' });
    expect(actor.snapshot().claims.map((claim) => claim.userId)).toEqual(['bob']);
    expect(durable.filter((event) => event.kind === 'payment').map((event) => event.kind === 'payment' && event.change)).toEqual([
      'awaiting_funds',
      'cancelled',
      'late_credit',
    ]);
  });

  it('answers a repeat only once the change it repeats is durable, and shows a change on the result page only when durable', async () => {
    const { actor, durable, release } = actorOf(providerPacket(), true);
    let firstDone = false;
    let repeatDone = false;
    void actor.settlePayment('paid', SIM_START_MS).then(() => (firstDone = true));
    void actor.settlePayment('paid', SIM_START_MS + 1).then(() => (repeatDone = true));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(firstDone || repeatDone).toBe(false);
    expect(actor.snapshot().status).toBe('pending_payment');
    release();
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(firstDone && repeatDone).toBe(true);
    expect(actor.snapshot().status).toBe('live');
    expect(durable).toHaveLength(1);
  });

  it('restores its phase from storage: an awaiting packet rebuilt after a restart still holds new claims', async () => {
    const stored = providerPacket();
    const { actor, durable } = actorOf({ ...stored, payment: { phase: 'awaiting_funds', lateCredited: false } });
    await actor.open('bob', SIM_START_MS);
    expect(durable[0]).toMatchObject({ kind: 'claim', held: true });
  });
});

describe('the shared cache and a provider-paid packet', () => {
  it('is told of a claim only once it is final: never of a held one (its packet may still be cancelled)', async () => {
    const told: string[] = [];
    const actor = new PacketActor(
      providerPacket(),
      {
        limits: LIMITS,
        seedFor: (packetId) => packetSeed(SIM_SEED_SECRET, packetId),
        commit: () => Promise.resolve(),
        onClaimDurable: (_packet, claim) => told.push(claim.userId),
      },
      SIM_START_MS,
    );
    await actor.settlePayment('returned_success', SIM_START_MS);
    await actor.open('bob', SIM_START_MS);
    expect(told).toEqual([]);
    await actor.settlePayment('paid', SIM_START_MS + 1);
    await actor.open('carol', SIM_START_MS + 2);
    expect(told).toEqual(['carol']);
  });
});
