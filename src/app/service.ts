// The application service's contract: one method per use case, answers as domain outcomes.
// The HTTP layer (and, later, a cluster forward) depends on this interface alone; it knows
// nothing of the engine, the log or the database behind it.
import type { Registry } from 'prom-client';
import type { Busy, GrabOutcome, OpenOutcome } from '../domain/grab-open.js';
import type { Limits } from '../domain/limits.js';
import type { Claim, Packet, PacketStatus } from '../domain/packet.js';
import type { ResultPage } from '../domain/result-page.js';
import type { SendRequest } from '../domain/validation.js';
import type { ReceivedItem } from '../ledger/records.js';
import type { StreamOpening } from './event-streams.js';
import type { Fen } from '../money/money.js';

/** A packet with the facts that change as it is opened. */
export interface PacketView {
  readonly packet: Packet;
  readonly status: PacketStatus;
  readonly claimedCount: number;
  readonly claimedFen: Fen;
}

/** What the sender's app needs to pay a provider-paid packet. */
export interface PaymentView {
  readonly orderId: string;
  readonly provider: string;
  readonly amountFen: Fen;
  readonly payToken: string;
  readonly expiresAtMs: number;
}

export type SendOutcome =
  | { kind: 'sent'; view: PacketView; payment?: PaymentView }
  /** The provider could not make the order: nothing was stored. */
  | { kind: 'provider_unavailable'; message: string }
  | { kind: 'invalid'; problems: string[] }
  | { kind: 'insufficient_balance'; balanceFen: Fen }
  | { kind: 'idempotency_conflict' };

export type DepositOutcome =
  | { kind: 'deposited'; userId: string; balanceFen: Fen }
  | { kind: 'invalid'; problems: string[] }
  | { kind: 'idempotency_conflict' };

export type { Busy };

export type GrabAnswer = GrabOutcome | { state: 'not_found' } | Busy;
export type OpenAnswer = OpenOutcome | { state: 'not_found' } | { state: 'rate_limited'; retryAfterMs: number };

export type PaymentReturnOutcome =
  | { kind: 'settled'; view: PacketView }
  | { kind: 'not_found' }
  | { kind: 'forbidden' }
  /** The payload does not verify, is for another order, or the packet has no payment: nothing changed. */
  | { kind: 'invalid'; reason: string }
  | Busy;

export type NotificationOutcome =
  | { kind: 'accepted' }
  /** A bad signature, a timestamp out of the window, or a nonce seen before: nothing changed. */
  | { kind: 'unauthorized'; reason: string }
  | { kind: 'invalid'; reason: string }
  | { kind: 'not_found'; reason: string }
  | Busy;

export interface WebhookView {
  readonly id: string;
  readonly url: string;
  /** Null: every type. */
  readonly events: readonly string[] | null;
  readonly secret: string;
  readonly createdAtMs: number;
}

export type WebhookOutcome = { kind: 'created'; webhook: WebhookView } | { kind: 'invalid'; problems: string[] };

export type { EventStream, StreamOpening } from './event-streams.js';

export type PageOutcome =
  | { kind: 'page'; view: PacketView; claims: readonly Claim[]; page: ResultPage }
  | { kind: 'not_found' }
  | { kind: 'forbidden' }
  | Busy;

/** One share received, as the records list it. */
export type { ReceivedItem } from '../ledger/records.js';

export interface SentRecordsView {
  readonly year: number;
  readonly count: number;
  readonly totalFen: Fen;
  readonly items: readonly PacketView[];
  readonly nextCursor: string | null;
}

export interface ReceivedRecordsView {
  readonly year: number;
  readonly count: number;
  readonly totalFen: Fen;
  readonly bestLuckCount: number;
  readonly items: readonly ReceivedItem[];
  readonly nextCursor: string | null;
}

export type RecordsOutcome<View> = { kind: 'records'; view: View } | { kind: 'invalid_cursor' };

export interface ReconciliationView {
  readonly checkedPackets: number;
  readonly checkedAccounts: number;
  /** Claims of the event log, up to the ledger's position, held against what was booked. */
  readonly checkedLogClaims: number;
  readonly discrepancies: readonly { readonly kind: string; readonly id: string; readonly message: string }[];
}

/** Which per-user bucket a request takes: open has its own (in `open`); every other route shares one. */
export type RequestUse = 'open' | 'request';

/** Whether a user's request may go ahead now; an admitted one calls `release` when it is answered. */
export type Admission =
  | { kind: 'admitted'; release: () => void }
  | { kind: 'rate_limited'; reason: 'rate' | 'in_flight'; retryAfterMs: number };

/**
 * Where a packet's requests are decided. In a cluster every packet has one owner node (the
 * owner of its log partition, its slot); any other node passes the request on.
 */
export type PacketRoute =
  | { kind: 'here' }
  | { kind: 'forward'; nodeId: string; url: string }
  /** A handover is under way (or the owner is not known yet): the caller retries after a pause. */
  | { kind: 'busy'; retryAfterMs: number };

export interface ClusterNodeView {
  readonly id: string;
  readonly url: string;
  readonly role: 'all' | 'engine' | 'ledger';
  /** The slots (log partitions) this node owns, ascending; empty for a ledger-only node. */
  readonly owns: readonly number[];
}

export interface ClusterView {
  readonly self: string;
  readonly nodes: readonly ClusterNodeView[];
}

export type Readiness = { ready: true } | { ready: false; reason: string };

export interface HongbaoService {
  /** The product limits in force (validation, the OpenAPI document). */
  readonly limits: Limits;
  /** The per-user open limit in force: a burst, then a steady rate. */
  readonly openRate: { readonly burst: number; readonly perSecond: number };
  /** The per-user limit on every other authenticated request, and on one user's requests in progress. */
  readonly requestLimits: { readonly burst: number; readonly perSecond: number; readonly inFlightMax: number };
  /** Prometheus registry of the service's metrics; the transport may add its own. */
  readonly metrics: Registry;
  /** False until recovery is done: nothing may be answered from a ledger that is behind the log. */
  readonly serving: boolean;
  /** Why the API is not served while `serving` is false, for the 503 it answers. */
  readonly notServingReason: string;

  /**
   * Per-user admission of an authenticated request, before its use case: a bound on the user's
   * requests in progress, and for every use but open a request bucket (open takes its own in `open`).
   */
  admit(userId: string, use: RequestUse): Promise<Admission>;
  send(request: SendRequest, idempotencyKey: string): Promise<SendOutcome>;
  deposit(callerId: string, userId: string, amountFen: Fen, idempotencyKey: string): Promise<DepositOutcome>;
  grab(packetId: string, userId: string): Promise<GrabAnswer>;
  open(packetId: string, userId: string): Promise<OpenAnswer>;
  resultPage(packetId: string, viewerId: string): Promise<PageOutcome>;
  wallet(userId: string): Promise<{ balanceFen: Fen; pendingFen: Fen }>;
  sentRecords(userId: string, year: number | undefined, cursor: string | undefined): Promise<RecordsOutcome<SentRecordsView>>;
  receivedRecords(userId: string, year: number | undefined, cursor: string | undefined): Promise<RecordsOutcome<ReceivedRecordsView>>;
  reconcile(): Promise<ReconciliationView>;
  readiness(): Promise<Readiness>;
  /** This node's name (NODE_ID): a forwarded request names the node it came from. */
  readonly nodeId: string;
  /** Where the packet's grab, open and result page are decided: here, on another node, or not now. */
  route(packetId: string): PacketRoute;
  /** The nodes of the cluster and the slots each owns (one node when not in a cluster). */
  cluster(): Promise<ClusterView>;
  /** Runs one expiry pass now (tests and operators; the job runs it every second). */
  expireDue(): Promise<void>;
  /** The payment providers `payWith` may name besides `balance`. */
  readonly paymentProviders: readonly string[];
  /** The provider's synchronous return, forwarded by the sender's app (sender only). */
  paymentReturn(packetId: string, callerId: string, returnPayload: string): Promise<PaymentReturnOutcome>;
  /** The provider's asynchronous notification, with its signature headers and raw body. */
  paymentNotification(provider: string, headers: (name: string) => string | undefined, body: string): Promise<NotificationOutcome>;
  /** Runs the payment jobs once now: the timeout queries, then the second sweep (tests and operators). */
  settlePaymentsDue(): Promise<void>;
  /** Webhooks (admin): register an endpoint (with its own new secret), list them, delete one. */
  registerWebhook(url: string, events: readonly string[] | null): Promise<WebhookOutcome>;
  webhooks(): Promise<WebhookView[]>;
  deleteWebhook(id: string): Promise<boolean>;
  /** A live stream of the caller's events, after `lastEventId` (or from now). */
  openEventStream(userId: string, lastEventId: string | undefined): Promise<StreamOpening>;
}
