// The use cases (API.md), each one method returning a domain outcome. Sending and deposits go
// to the ledger under their Idempotency-Key; grab, open and the result page go to the packet's
// actor in the engine; balances add the claims decided here but not yet booked.
import { randomBytes } from 'node:crypto';
import type { Registry } from 'prom-client';
import { BUSY } from '../domain/grab-open.js';
import { mayView, type Packet } from '../domain/packet.js';
import { newPacketId, PACKET_ID_RANDOM_BYTES, type PacketIdKey } from '../domain/packet-id.js';
import type { Limits } from '../domain/limits.js';
import { resultPage } from '../domain/result-page.js';
import { planSend, type SendRequest } from '../domain/validation.js';
import type { Clock } from '../engine/clock.js';
import type { Engine } from '../engine/engine.js';
import type { OpenRate, RateLimiter } from '../engine/rate-limit.js';
import type { LedgerPort, SendBooking } from '../ledger/ledger.js';
import type { PacketOrder } from '../ledger/payments.js';
import { orderIdOf } from '../domain/payment.js';
import type { PendingCredits } from '../ledger/pending-credits.js';
import { decodeCursor, encodeCursor, recordsYearOf, type Cursor } from '../ledger/record-cursor.js';
import type { Fen } from '../money/money.js';
import type { UserAdmission } from './admission.js';
import type { ServiceMetrics } from './metrics.js';
import type { EventStreams, StreamOpening } from './event-streams.js';
import type { NotificationStorePort } from '../notify/store-port.js';
import { newWebhookSecret } from '../notify/signature.js';
import { webhookUrlProblem } from '../notify/webhook-url.js';
import { NOTIFICATION_TYPES } from '../domain/notification.js';
import { ProviderUnavailableError, viewOf, type PaymentDesk } from './payment-desk.js';
import type {
  Admission,
  ClusterView,
  NotificationOutcome,
  PaymentReturnOutcome,
  PaymentView,
  WebhookOutcome,
  WebhookView,
  DepositOutcome,
  PacketRoute,
  GrabAnswer,
  HongbaoService,
  OpenAnswer,
  PageOutcome,
  Readiness,
  ReceivedRecordsView,
  RecordsOutcome,
  SendOutcome,
  RequestUse,
  SentRecordsView,
} from './service.js';

export interface ServiceParts {
  readonly limits: Limits;
  readonly clock: Clock;
  readonly ledger: LedgerPort;
  readonly engine: Engine;
  readonly pending: PendingCredits;
  readonly openLimiter: RateLimiter;
  readonly openRate: OpenRate;
  /** Per-user admission of every authenticated request (in-flight bound, request bucket). */
  readonly admission: UserAdmission;
  /** Key of the tag packet ids carry (domain/packet-id.ts): an id without a valid tag is not looked up. */
  readonly packetIdKey: PacketIdKey;
  readonly metrics: ServiceMetrics;
  readonly expireDue: () => Promise<void>;
  /** Checks of the parts beyond the database (the log, Redis); rejects with the reason. */
  readonly checkDependencies: () => Promise<void>;
  /** Which node decides each packet (a single process decides every packet itself). */
  readonly placement: Placement;
  /** Orders, returns and notifications of the payment providers. */
  readonly payments: PaymentDesk;
  /** The notification tables (webhooks, deliveries, streams) and the live streams. */
  readonly notifications: NotificationStorePort;
  readonly streams: EventStreams;
  /** Whether a webhook may point at a private or loopback address (WEBHOOK_ALLOW_PRIVATE). */
  readonly webhooksAllowPrivate: boolean;
  /** Events were stored for these users outside the notifier (packet.sent): wake their streams and the dispatcher. */
  readonly onEventsRecorded?: (users: readonly string[]) => void;
}

/** This node's place in the cluster: the owner of each packet, and who is in it. */
export interface Placement {
  readonly nodeId: string;
  route(packetId: string): PacketRoute;
  view(): Promise<ClusterView>;
}

const HERE: PacketRoute = Object.freeze({ kind: 'here' });

/** A process that decides every packet itself: the embedded default, or the table log on a Postgres server. */
export function singleNode(node: { id: string; url: string; role: 'all' | 'engine' | 'ledger' }): Placement {
  return {
    nodeId: node.id,
    route: () => HERE,
    view: async () => ({ self: node.id, nodes: [{ ...node, owns: node.role === 'ledger' ? [] : [0] }] }),
  };
}

export class Service implements HongbaoService {
  serving = false;
  /** Why the API is not served (recovering, standby for the engine lock, a ledger-only process). */
  notServingReason = 'recovering: applying the event log';
  /** A ledger-only process (ROLE=ledger) is ready once it books the log, though it serves no API. */
  readyWithoutServing = false;

  constructor(private readonly parts: ServiceParts) {}

  get limits(): Limits {
    return this.parts.limits;
  }

  get openRate(): OpenRate {
    return this.parts.openRate;
  }

  get requestLimits() {
    return this.parts.admission.limits;
  }

  get metrics(): Registry {
    return this.parts.metrics.registry;
  }

  get nodeId(): string {
    return this.parts.placement.nodeId;
  }

  route(packetId: string): PacketRoute {
    return this.parts.placement.route(packetId);
  }

  cluster(): Promise<ClusterView> {
    return this.parts.placement.view();
  }

  admit(userId: string, use: RequestUse): Promise<Admission> {
    return this.parts.admission.admit(userId, use);
  }

  async send(request: SendRequest, idempotencyKey: string): Promise<SendOutcome> {
    const stopTimer = this.parts.metrics.sendSeconds.startTimer();
    try {
      const plan = planSend(request, this.parts.limits);
      if (!plan.ok) return { kind: 'invalid', problems: plan.problems };
      const nowMs = this.parts.clock.now();
      const payWith = request.payWith;
      if (payWith !== undefined && !this.parts.payments.providerNames.includes(payWith)) {
        return { kind: 'invalid', problems: [`payWith must be balance or one of: ${this.parts.payments.providerNames.join(', ') || '(none configured)'}`] };
      }
      const packetId = newPacketId(this.parts.packetIdKey, randomBytes(PACKET_ID_RANDOM_BYTES));
      const packet: Packet = {
        id: packetId,
        type: request.type,
        senderId: request.senderId,
        targetId: request.targetId,
        count: request.count,
        totalFen: plan.totalFen,
        greeting: request.greeting,
        members: request.members,
        createdAtMs: nowMs,
        liveAtMs: nowMs,
        // Provisional for a provider-paid packet: its lifetime starts when it becomes openable.
        expiresAtMs: nowMs + this.parts.limits.ttlMs,
        ...(payWith !== undefined ? { payment: { provider: payWith, orderId: orderIdOf(packetId) } } : {}),
      };
      const idempotency = { callerId: request.senderId, key: idempotencyKey, request };
      let order: PacketOrder | undefined;
      if (payWith !== undefined) {
        // Asked first, so that a retried send makes no second order at the provider.
        const stored = await this.parts.ledger.findSend(idempotency);
        if (stored !== null) return this.sent(stored);
        try {
          order = await this.parts.payments.createOrder(packet, payWith);
        } catch (error) {
          if (error instanceof ProviderUnavailableError) return { kind: 'provider_unavailable', message: error.message };
          throw error;
        }
      }
      const booking = await this.parts.ledger.send(packet, idempotency, order);
      if (booking.kind === 'fresh') this.parts.onEventsRecorded?.([packet.senderId]);
      if (booking.kind === 'fresh' && this.parts.placement.route(booking.value.id).kind === 'here') {
        // Its actor starts here only if this node decides it; the owner loads it on first use.
        const { order: _order, ...sent } = booking.value;
        this.parts.engine.adopt({ packet: sent, claims: [], expired: false, ...(order ? { payment: { phase: 'pending_payment', lateCredited: false } } : {}) });
      }
      return this.sent(booking);
    } finally {
      stopTimer();
    }
  }

  /** A send's answer; a replay is the first answer again: the packet as it was sent, whatever happened to it since. */
  private sent(booking: SendBooking): SendOutcome {
    switch (booking.kind) {
      case 'conflict':
        return { kind: 'idempotency_conflict' };
      case 'rejected':
        return { kind: 'insufficient_balance', balanceFen: booking.rejection.balanceFen };
      case 'fresh':
      case 'replayed': {
        const { order, ...packet } = booking.value;
        const view = { packet, status: order === undefined ? ('live' as const) : ('pending_payment' as const), claimedCount: 0, claimedFen: 0 };
        if (order === undefined) return { kind: 'sent', view };
        const payment: PaymentView = { orderId: order.orderId, provider: order.provider, amountFen: order.amountFen, payToken: order.payToken, expiresAtMs: order.expiresAtMs };
        return { kind: 'sent', view, payment };
      }
    }
  }

  async deposit(callerId: string, userId: string, amountFen: Fen, idempotencyKey: string): Promise<DepositOutcome> {
    if (!Number.isSafeInteger(amountFen) || amountFen < 1) return { kind: 'invalid', problems: ['amount must be at least 0.01'] };
    const booking = await this.parts.ledger.deposit(userId, amountFen, { callerId, key: idempotencyKey, request: { userId, amountFen } });
    if (booking.kind === 'conflict') return { kind: 'idempotency_conflict' };
    if (booking.kind === 'rejected') return { kind: 'invalid', problems: [booking.rejection.reason] };
    return { kind: 'deposited', userId: booking.value.userId, balanceFen: booking.value.balanceFen };
  }

  grab(packetId: string, userId: string): Promise<GrabAnswer> {
    return this.parts.engine.grab(packetId, userId);
  }

  async open(packetId: string, userId: string): Promise<OpenAnswer> {
    const stopTimer = this.parts.metrics.openSeconds.startTimer();
    if (!(await this.parts.openLimiter.take(userId, this.parts.clock.now()))) {
      this.parts.metrics.opens.inc({ state: 'rate_limited' });
      stopTimer();
      // One token comes back every 1 / perSecond seconds.
      return { state: 'rate_limited', retryAfterMs: Math.ceil(1000 / this.parts.openRate.perSecond) };
    }
    const outcome = await this.parts.engine.open(packetId, userId);
    this.parts.metrics.opens.inc({ state: outcome.state });
    stopTimer();
    return outcome;
  }

  async resultPage(packetId: string, viewerId: string): Promise<PageOutcome> {
    const snapshot = await this.parts.engine.view(packetId);
    if (snapshot === null) return { kind: 'not_found' };
    if (snapshot === 'busy') return BUSY;
    if (!mayView(snapshot.packet, viewerId)) return { kind: 'forbidden' };
    return {
      kind: 'page',
      view: viewOf(snapshot),
      claims: snapshot.claims,
      page: resultPage(snapshot.packet, snapshot.status, snapshot.claims, viewerId),
    };
  }

  /** `pending`: claims decided here and not yet booked, and booked claims held for packets awaiting their funds. */
  async wallet(userId: string): Promise<{ balanceFen: Fen; pendingFen: Fen }> {
    const { balanceFen, heldFen, booked } = await this.parts.ledger.wallet(userId, this.parts.pending.idsOf(userId));
    // Booked meanwhile (on a node whose consumer is elsewhere, nothing else would say so): in the balance or held now.
    for (const transferId of booked) this.parts.pending.settle(userId, transferId);
    return { balanceFen, pendingFen: this.parts.pending.pendingFen(userId) + heldFen };
  }

  sentRecords(userId: string, year: number | undefined, cursor: string | undefined): Promise<RecordsOutcome<SentRecordsView>> {
    return this.records(year, cursor, (recordsYear, after) => this.parts.ledger.sentRecords(userId, recordsYear, after));
  }

  receivedRecords(userId: string, year: number | undefined, cursor: string | undefined): Promise<RecordsOutcome<ReceivedRecordsView>> {
    return this.records(year, cursor, (recordsYear, after) => this.parts.ledger.receivedRecords(userId, recordsYear, after));
  }

  /** A page of records: the opaque cursor decoded (or refused), the year defaulted, the next cursor encoded. */
  private async records<Records extends { nextCursor: Cursor | null }>(
    year: number | undefined,
    cursor: string | undefined,
    read: (year: number, after: Cursor | null) => Promise<Records>,
  ): Promise<RecordsOutcome<Omit<Records, 'nextCursor'> & { year: number; nextCursor: string | null }>> {
    const after = cursorOf(cursor);
    if (after === 'invalid') return { kind: 'invalid_cursor' };
    const recordsYear = year ?? recordsYearOf(this.parts.clock.now());
    const records = await read(recordsYear, after);
    return {
      kind: 'records',
      view: { ...records, year: recordsYear, nextCursor: records.nextCursor === null ? null : encodeCursor(records.nextCursor) },
    };
  }

  reconcile() {
    return this.parts.ledger.reconcile();
  }

  async readiness(): Promise<Readiness> {
    if (!this.serving && !this.readyWithoutServing) return { ready: false, reason: this.notServingReason };
    try {
      await this.parts.ledger.check();
      await this.parts.checkDependencies();
      return { ready: true };
    } catch (error) {
      return { ready: false, reason: (error as Error).message };
    }
  }

  expireDue(): Promise<void> {
    return this.parts.expireDue();
  }

  get paymentProviders(): readonly string[] {
    return this.parts.payments.providerNames;
  }

  paymentReturn(packetId: string, callerId: string, returnPayload: string): Promise<PaymentReturnOutcome> {
    return this.parts.payments.paymentReturn(packetId, callerId, returnPayload);
  }

  paymentNotification(provider: string, headers: (name: string) => string | undefined, body: string): Promise<NotificationOutcome> {
    return this.parts.payments.notification(provider, headers, body);
  }

  async registerWebhook(url: string, events: readonly string[] | null): Promise<WebhookOutcome> {
    const problems: string[] = [];
    const urlProblem = webhookUrlProblem(url, this.parts.webhooksAllowPrivate);
    if (urlProblem !== null) problems.push(urlProblem);
    if (events !== null) {
      if (events.length === 0) problems.push('events, when given, must list at least one type');
      const unknown = events.filter((type) => !(NOTIFICATION_TYPES as readonly string[]).includes(type));
      if (unknown.length > 0) problems.push(`unknown event types: ${unknown.join(', ')} (known: ${NOTIFICATION_TYPES.join(', ')})`);
      if (new Set(events).size !== events.length) problems.push('events must not repeat a type');
    }
    if (problems.length > 0) return { kind: 'invalid', problems };
    const webhook = await this.parts.notifications.createWebhook({ id: `wh_${randomBytes(12).toString('base64url')}`, url, events, secret: newWebhookSecret() });
    return { kind: 'created', webhook };
  }

  webhooks(): Promise<WebhookView[]> {
    return this.parts.notifications.listWebhooks();
  }

  deleteWebhook(id: string): Promise<boolean> {
    return this.parts.notifications.deleteWebhook(id);
  }

  openEventStream(userId: string, lastEventId: string | undefined): Promise<StreamOpening> {
    return this.parts.streams.openStream(userId, lastEventId);
  }

  async settlePaymentsDue(): Promise<void> {
    await this.parts.payments.timeoutPass();
    await this.parts.payments.resweepPass();
  }
}

function cursorOf(text: string | undefined): Cursor | null | 'invalid' {
  if (text === undefined || text === '') return null;
  return decodeCursor(text) ?? 'invalid';
}
