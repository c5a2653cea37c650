// Paying through a provider (API.md, Payments through a provider): making the order at send,
// believing the provider's signed messages only once verified, and turning each into a signal
// for the packet's actor, which decides it in order with the opens. The jobs ask the provider
// about payments nothing confirmed in time, and sweep a second time after a funding.
import type { Logger } from 'pino';
import { NOTIFICATION_WINDOW_MS, type NotificationHeaders, type PaymentProvider } from '../payments/provider.js';
import type { Packet } from '../domain/packet.js';
import { orderIdOf, packetIdOfOrder, type PaymentSignal } from '../domain/payment.js';
import type { Clock } from '../engine/clock.js';
import type { Engine } from '../engine/engine.js';
import type { PacketSnapshot, PaymentAnswer } from '../engine/packet-actor.js';
import type { LedgerPort } from '../ledger/ledger.js';
import type { PacketOrder } from '../ledger/payments.js';
import type { ServiceMetrics } from './metrics.js';
import type { NotificationOutcome, PacketView, PaymentReturnOutcome } from './service.js';
import { BUSY } from '../domain/grab-open.js';

/** Unconfirmed payments one timeout pass asks the provider about. */
export const PAYMENT_TIMEOUT_BATCH_MAX = 100;
/** How often the timeout and re-sweep jobs run. */
export const PAYMENT_JOBS_INTERVAL_MS = 1_000;
/** Nonces are kept for twice the window either way of the signed time: a replay is always still known. */
const NONCE_KEEP_MS = 2 * NOTIFICATION_WINDOW_MS;

export interface PaymentSettings {
  /** How long a payment may stay unconfirmed before the server asks the provider (PAYMENT_TIMEOUT_MS). */
  readonly timeoutMs: number;
  /** The second crediting sweep, this long after a funding (PAYMENT_RESWEEP_MS). */
  readonly resweepMs: number;
  /** Where the provider notifies us (our own notify route, as the provider can reach it). */
  readonly notifyUrl: (provider: string) => string;
}

/** The providers this engine can take money from, by name; each made (and its key pinned) on first use. */
export type Providers = ReadonlyMap<string, () => Promise<PaymentProvider>>;

export interface PaymentDeskParts {
  readonly providers: Providers;
  readonly settings: PaymentSettings;
  readonly ledger: LedgerPort;
  readonly engine: Engine;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: ServiceMetrics;
  /** Whether this node decides the packet (a cluster's jobs take only their own slots' packets). */
  readonly decidesHere: (packetId: string) => boolean;
}

/** A packet with the facts that change as it is opened, from its actor's durable snapshot. */
export function viewOf(snapshot: PacketSnapshot): PacketView {
  const claimedFen = snapshot.claims.reduce((sum, claim) => sum + claim.amountFen, 0);
  return { packet: snapshot.packet, status: snapshot.status, claimedCount: snapshot.claims.length, claimedFen };
}

export class ProviderUnavailableError extends Error {
  override readonly name = 'ProviderUnavailableError';
}

export class PaymentDesk {
  private readonly made = new Map<string, Promise<PaymentProvider>>();

  constructor(private readonly parts: PaymentDeskParts) {}

  get providerNames(): string[] {
    return [...this.parts.providers.keys()];
  }

  /** The provider by name, made once; a failed making (its key could not be fetched) is tried again next time. */
  private provider(name: string): Promise<PaymentProvider> | undefined {
    const make = this.parts.providers.get(name);
    if (make === undefined) return undefined;
    let made = this.made.get(name);
    if (made === undefined) {
      made = make().catch((error: unknown) => {
        this.made.delete(name);
        throw new ProviderUnavailableError(`the payment provider ${name} cannot be reached: ${(error as Error).message}`, { cause: error });
      });
      this.made.set(name, made);
    }
    return made;
  }

  /** Creates the packet's order with the provider (one per packet: creating it again is the same order). */
  async createOrder(packet: Packet, providerName: string): Promise<PacketOrder> {
    const provider = await this.provider(providerName);
    if (provider === undefined) throw new ProviderUnavailableError(`no payment provider named ${providerName}`);
    const orderId = orderIdOf(packet.id);
    try {
      const order = await provider.createOrder({
        orderId,
        amountFen: packet.totalFen,
        description: `红包 ${packet.greeting}`.slice(0, 200),
        notifyUrl: this.parts.settings.notifyUrl(providerName),
        expiresAtMs: this.parts.clock.now() + this.parts.settings.timeoutMs,
      });
      return { orderId, provider: providerName, amountFen: order.amountFen, payToken: order.payToken, expiresAtMs: order.expiresAtMs };
    } catch (error) {
      throw new ProviderUnavailableError(`the payment provider ${providerName} did not create the order: ${(error as Error).message}`, { cause: error });
    }
  }

  /** The provider's synchronous return, forwarded by the sender's app. */
  async paymentReturn(packetId: string, callerId: string, returnPayload: string): Promise<PaymentReturnOutcome> {
    const snapshot = await this.parts.engine.view(packetId);
    if (snapshot === null) return { kind: 'not_found' };
    if (snapshot === 'busy') return BUSY;
    const { packet } = snapshot;
    if (callerId !== packet.senderId) return { kind: 'forbidden' };
    if (packet.payment === undefined) return { kind: 'invalid', reason: 'this packet was paid from the balance: it has no payment to return' };
    const provider = await this.provider(packet.payment.provider);
    if (provider === undefined) return { kind: 'invalid', reason: `no payment provider named ${packet.payment.provider}` };
    const verdict = provider.verifyReturn(returnPayload);
    if (!verdict.ok) return this.refuse('return', 'invalid', `the returnPayload does not verify: ${verdict.reason}`);
    if (verdict.value.orderId !== packet.payment.orderId) return this.refuse('return', 'invalid', 'the returnPayload is for another order');
    if (verdict.value.amountFen !== packet.totalFen) return this.refuse('return', 'invalid', "the returnPayload's amount is not this packet's total");
    const answer = await this.signal(packetId, verdict.value.outcome === 'success' ? 'returned_success' : 'returned_fail', 'return');
    if (answer === null) return { kind: 'not_found' };
    if (answer === 'busy') return BUSY;
    const after = await this.parts.engine.view(packetId);
    if (after === null) return { kind: 'not_found' };
    if (after === 'busy') return BUSY;
    return { kind: 'settled', view: viewOf(after) };
  }

  /**
   * The provider's asynchronous notification: its signature over the raw body, a timestamp
   * within ±5 minutes, and a nonce never seen (durably, so a replay after a restart is one too).
   * A valid repeat is answered as accepted: the actor's answer to a repeat is "no change".
   */
  async notification(providerName: string, headers: NotificationHeaders, body: string): Promise<NotificationOutcome> {
    const provider = await this.provider(providerName);
    if (provider === undefined) return { kind: 'not_found', reason: `no payment provider named ${providerName}` };
    const nowMs = this.parts.clock.now();
    const verdict = provider.verifyNotification(headers, body, nowMs);
    if (!verdict.ok) return this.refuse('notification', 'unauthorized', verdict.reason);
    const { value } = verdict;
    const packetId = packetIdOfOrder(value.orderId);
    if (packetId === null) return this.refuse('notification', 'not_found', `no order ${value.orderId} was made here`);
    // Before anything is believed or changed: a replayed message is refused even if it would be harmless.
    if (!(await this.parts.ledger.rememberNonce(providerName, value.nonce, value.timestampMs, nowMs, NONCE_KEEP_MS))) {
      return this.refuse('notification', 'unauthorized', 'its nonce was seen before (a replay)');
    }
    const snapshot = await this.parts.engine.view(packetId);
    if (snapshot === 'busy') return BUSY;
    if (snapshot === null || snapshot.packet.payment?.orderId !== value.orderId) {
      return this.refuse('notification', 'not_found', `no packet is paid by order ${value.orderId}`);
    }
    if (value.amountFen !== snapshot.packet.totalFen) {
      // A provider that reports another amount than the order's has a bug we must not guess around.
      this.parts.logger.error({ orderId: value.orderId, amountFen: value.amountFen, totalFen: snapshot.packet.totalFen }, 'payment notification for another amount');
      return this.refuse('notification', 'invalid', "the notification's amount is not the order's");
    }
    const answer = await this.signal(packetId, value.status === 'paid' ? 'paid' : 'failed', 'notification');
    if (answer === null) return { kind: 'not_found', reason: `no packet ${packetId}` };
    if (answer === 'busy') return BUSY;
    return { kind: 'accepted' };
  }

  /**
   * Asks the provider about every payment unconfirmed for PAYMENT_TIMEOUT_MS: paid → funded as
   * if notified; failed → cancelled; unpaid → the order is closed first (so it can no longer be
   * paid) and the packet cancelled, unless the close finds it paid after all. Each step is a
   * signal to the actor or an idempotent call, so a pass cut short by a crash is simply run again.
   */
  async timeoutPass(): Promise<void> {
    const nowMs = this.parts.clock.now();
    const due = (await this.parts.ledger.duePayments(nowMs - this.parts.settings.timeoutMs, PAYMENT_TIMEOUT_BATCH_MAX)).filter((payment) =>
      this.parts.decidesHere(payment.packetId),
    );
    const failures: unknown[] = [];
    for (const payment of due) {
      try {
        const provider = await this.provider(payment.provider);
        if (provider === undefined) throw new Error(`no payment provider named ${payment.provider}`);
        let state = await provider.queryOrder(payment.orderId);
        if (state.status === 'unpaid') {
          state = await provider.closeOrder(payment.orderId);
          if (state.closed) await this.parts.ledger.markOrderClosed(payment.orderId, nowMs);
        }
        const signal: PaymentSignal = state.status === 'paid' ? 'paid' : state.status === 'failed' && !state.closed ? 'failed' : 'unpaid_at_timeout';
        const answer = await this.signal(payment.packetId, signal, 'query');
        if (answer === 'busy') throw new Error(`packet ${payment.packetId} is busy`);
      } catch (error) {
        failures.push(error);
      }
    }
    if (failures.length > 0) throw new AggregateError(failures, `${failures.length} of ${due.length} unconfirmed payments could not be settled; retrying next pass`);
  }

  /** The second sweep, PAYMENT_RESWEEP_MS after each funding. */
  async resweepPass(): Promise<void> {
    const swept = await this.parts.ledger.resweep(this.parts.clock.now() - this.parts.settings.resweepMs);
    if (swept.credited > 0) {
      this.parts.metrics.resweptClaims.inc(swept.credited);
      this.parts.logger.warn({ packets: swept.packets, credited: swept.credited }, 'the second payment sweep credited held claims the funding had not');
    }
    for (const conflict of swept.conflicts) this.parts.logger.error({ conflict }, 'ledger conflict in the second payment sweep');
  }

  private async signal(packetId: string, signal: PaymentSignal, source: 'return' | 'notification' | 'query'): Promise<PaymentAnswer | null | 'busy'> {
    const answer = await this.parts.engine.settlePayment(packetId, signal);
    if (answer !== null && answer !== 'busy') {
      this.parts.metrics.payments.inc({ source, change: answer.change.kind });
      if (answer.change.kind === 'none' && answer.change.why === 'contradicts_settled') {
        this.parts.logger.warn({ packetId, signal, phase: answer.phase }, 'a payment signal contradicts a settled payment; nothing changed');
      } else if (answer.change.kind !== 'none') {
        this.parts.logger.info({ packetId, signal, change: answer.change.kind, phase: answer.phase }, 'payment');
      }
    }
    return answer;
  }

  private refuse<Kind extends 'invalid' | 'unauthorized' | 'not_found'>(source: 'return' | 'notification', kind: Kind, reason: string) {
    this.parts.metrics.paymentRefusals.inc({ source, reason: kind });
    return { kind, reason } as const;
  }
}
