// The assembled service: database, event log, engine, ledger consumer and jobs, with the
// operations the HTTP layer translates. main.ts starts one; tests start their own.
import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import { DEFAULT_LIMITS, type Limits } from './domain/limits.js';
import type { Packet } from './domain/packet.js';
import { packetSeed } from './domain/random.js';
import { planSend, type SendRequest } from './domain/validation.js';
import type { Clock } from './engine/clock.js';
import type { PacketCache } from './engine/packet-cache.js';
import { Engine } from './engine/engine.js';
import { every, expiryPass, EXPIRY_INTERVAL_MS, type PeriodicJob } from './jobs/expiry.js';
import { openDatabase, type Database } from './ledger/database.js';
import { runIdempotent, type IdempotentResult, type StoredResponse } from './ledger/idempotency.js';
import { LedgerConsumer } from './ledger/ledger-consumer.js';
import { loadStoredPacket, storeSentPacket } from './ledger/packet-store.js';
import { PendingCredits } from './ledger/pending-credits.js';
import { reconcile } from './ledger/reconciliation.js';
import { deposit, walletBalance } from './ledger/wallets.js';
import type { EventLog } from './log/event-log.js';
import { claimTransferId } from './log/events.js';
import { GroupCommitter } from './log/group-commit.js';
import { TableLog } from './log/table-log.js';
import type { Fen } from './money/money.js';

/** How long an activation waits for the ledger to catch up before answering 503. */
export const ACTIVATION_CATCH_UP_TIMEOUT_MS = 10_000;
/** How long start-up may take to apply what the log holds before it gives up. */
export const RECOVERY_TIMEOUT_MS = 10 * 60_000;
/** Idle actors are dropped after this; they come back from storage on the next request. */
export const ACTOR_IDLE_MS = 60_000;

export interface HongbaoOptions {
  readonly dataDir: string;
  readonly databaseUrl?: string | undefined;
  readonly seedSecret: string;
  readonly packetTtlMs: number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly limits?: Limits;
  /** Builds the event log on the opened database; defaults to the table log. */
  readonly openLog?: (database: Database) => Promise<EventLog>;
  /** Tests drive the jobs by hand. */
  readonly runJobs?: boolean;
  /** Whether this process runs the ledger consumer (false for an engine-only process of a cluster). */
  readonly runConsumer?: boolean;
  /** A shared cache in front of the actors (Redis). */
  readonly cache?: PacketCache;
}

export type SendOutcome =
  | { kind: 'invalid'; problems: string[] }
  | { kind: 'conflict' }
  | { kind: 'done'; response: StoredResponse };

export class Hongbao {
  private ready = false;
  private jobs: PeriodicJob[] = [];

  private constructor(
    readonly options: HongbaoOptions,
    readonly database: Database,
    readonly log: EventLog,
    readonly committer: GroupCommitter,
    readonly engine: Engine,
    readonly consumer: LedgerConsumer,
    readonly pending: PendingCredits,
    readonly limits: Limits,
  ) {}

  /** Opens and recovers: the service is ready when this resolves. */
  static async start(options: HongbaoOptions): Promise<Hongbao> {
    const hongbao = await Hongbao.open(options);
    await hongbao.recover();
    return hongbao;
  }

  /** Connects the database and the log; nothing is served from it until recover() finished. */
  static async open(options: HongbaoOptions): Promise<Hongbao> {
    const limits = options.limits ?? { ...DEFAULT_LIMITS, ttlMs: options.packetTtlMs };
    const database = await openDatabase({
      url: options.databaseUrl,
      dataDir: options.dataDir,
      onPoolError: (error) => options.logger.warn({ err: error }, 'database connection lost; reconnecting on next use'),
    });
    const log = options.openLog ? await options.openLog(database) : new TableLog(database.db);
    const committer = new GroupCommitter(log);
    const pending = new PendingCredits();
    const consumer = new LedgerConsumer(database.db, log, {
      onApplied: ({ claims }) => {
        for (const claim of claims) pending.settle(claim.userId, claimTransferId(claim.packetId, claim.seq));
      },
      onError: (error) => options.logger.warn({ err: error }, 'ledger batch failed; it will be retried'),
    });
    const engine = new Engine({
      limits,
      clock: options.clock,
      seedFor: (packetId) => packetSeed(options.seedSecret, packetId),
      commit: (event, onFailure) => committer.submit(event, onFailure),
      source: {
        load: async (packetId) => {
          // Rebuild only from a ledger that has every event the log already holds for this packet.
          await consumer.waitApplied(await log.headFor(packetId), ACTIVATION_CATCH_UP_TIMEOUT_MS);
          return loadStoredPacket(database.db, packetId);
        },
      },
      onClaimDecided: (claim) => pending.add(claim.userId, claimTransferId(claim.packetId, claim.seq), claim.amountFen),
      onClaimFailed: (claim) => pending.settle(claim.userId, claimTransferId(claim.packetId, claim.seq)),
      ...(options.cache ? { cache: options.cache } : {}),
    });
    return new Hongbao(options, database, log, committer, engine, consumer, pending, limits);
  }

  /** Recovery: the ledger applies everything the log already holds before anyone is answered. */
  async recover(): Promise<void> {
    if (this.options.runConsumer !== false) await this.consumer.start();
    await this.consumer.waitAppliedAll(await this.log.heads(), RECOVERY_TIMEOUT_MS);
    if (this.options.runJobs !== false) this.startJobs();
    this.ready = true;
  }

  get isReady(): boolean {
    return this.ready;
  }

  private startJobs(): void {
    const onError = (error: unknown) => this.options.logger.warn({ err: error }, 'job pass failed; retrying next tick');
    this.jobs.push(every(EXPIRY_INTERVAL_MS, () => this.expireDue(), onError));
    this.jobs.push(
      every(ACTOR_IDLE_MS / 4, async () => {
        this.engine.evictIdle(ACTOR_IDLE_MS);
      }, onError),
    );
  }

  /** Runs one expiry pass now (tests, and the admin). */
  expireDue(): Promise<void> {
    return expiryPass(this.database.db, this.engine, this.options.clock)();
  }

  async send(
    request: SendRequest,
    idempotencyKey: string,
    render: (packet: Packet) => unknown,
    insufficient: (balanceFen: Fen) => unknown,
  ): Promise<SendOutcome> {
    const plan = planSend(request, this.limits);
    if (!plan.ok) return { kind: 'invalid', problems: plan.problems };
    const nowMs = this.options.clock.now();
    const packet: Packet = {
      id: newPacketId(),
      type: request.type,
      senderId: request.senderId,
      targetId: request.targetId,
      count: request.count,
      totalFen: plan.totalFen,
      greeting: request.greeting,
      members: request.members,
      createdAtMs: nowMs,
      liveAtMs: nowMs,
      expiresAtMs: nowMs + this.limits.ttlMs,
    };
    const result: IdempotentResult = await runIdempotent(
      this.database.db,
      { userId: request.senderId, route: 'POST /v1/packets', key: idempotencyKey, request },
      async (tx) => {
        const stored = await storeSentPacket(tx, packet);
        if (!stored.ok) return { statusCode: 402, body: insufficient(stored.balanceFen) };
        return { statusCode: 201, body: render(packet) };
      },
    );
    if (result.kind === 'conflict') return { kind: 'conflict' };
    if (result.kind === 'fresh' && result.response.statusCode === 201) this.engine.adopt({ packet, claims: [], expired: false });
    return { kind: 'done', response: result.response };
  }

  async deposit(
    callerId: string,
    userId: string,
    amountFen: Fen,
    idempotencyKey: string,
    render: (balanceFen: Fen) => unknown,
  ): Promise<SendOutcome> {
    const result = await runIdempotent(
      this.database.db,
      { userId: callerId, route: 'POST /v1/wallet/deposits', key: idempotencyKey, request: { userId, amountFen } },
      async (tx) => ({ statusCode: 201, body: render(await deposit(tx, userId, amountFen, `${callerId}:${idempotencyKey}`)) }),
    );
    return result.kind === 'conflict' ? { kind: 'conflict' } : { kind: 'done', response: result.response };
  }

  async wallet(userId: string): Promise<{ balanceFen: Fen; pendingFen: Fen }> {
    return { balanceFen: await walletBalance(this.database.db, userId), pendingFen: this.pending.pendingFen(userId) };
  }

  /** Throws if the database does not answer. */
  async checkDatabase(): Promise<void> {
    await this.database.db.execute(sql`select 1`);
  }

  reconcile() {
    return reconcile(this.database.db, this.log);
  }

  async stop(): Promise<void> {
    this.ready = false;
    await Promise.all(this.jobs.map((job) => job.stop()));
    await this.consumer.stop();
    await this.log.close();
    await this.database.close();
  }
}

/** Opaque, unguessable, URL-safe. */
function newPacketId(): string {
  return `p_${randomBytes(12).toString('base64url')}`;
}
