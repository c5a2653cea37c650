// The notifier (红包被抢提醒): a second reader of the event log, beside the ledger consumer. It
// reads each batch once the ledger has applied it (so the facts it reads — who sent the packet,
// its claims — are there), derives the API's events, and stores them with their deliveries and
// its own log position in one transaction: a restart neither skips nor repeats anything, and
// since every event id is derived from what happened, a batch read again adds nothing.
import { eq } from 'drizzle-orm';
import type { Db } from '../ledger/database.js';
import { storePositions } from '../ledger/ledger-consumer.js';
import { packetFacts, recordNotifications } from '../ledger/notifications.js';
import { logPositions } from '../ledger/schema.js';
import type { EventLog, LogBatch, LogPosition, Subscription } from '../log/event-log.js';
import { deriveNotifications, packetsNeedingClaims } from './derive.js';

/** How long a batch waits for the ledger to apply it before it is read again. */
const LEDGER_WAIT_MS = 30_000;

export interface NotifierOptions {
  /** Resolves once the ledger has applied the log up to these positions. */
  readonly ledgerApplied: (positions: readonly LogPosition[], timeoutMs: number) => Promise<void>;
  readonly now: () => number;
  /** After each committed batch: the users whose streams have something new. */
  readonly onRecorded?: (users: readonly string[], events: number) => void;
  readonly onError?: (error: unknown) => void;
}

/** Where the notifier's positions are stored: beside the ledger's, under their own name. */
export const notifierLogName = (log: EventLog) => `notify:${log.name}`;

export class Notifier {
  private subscription: Subscription | undefined;
  recordedEvents = 0;
  failedBatches = 0;

  constructor(
    private readonly db: Db,
    private readonly log: EventLog,
    private readonly options: NotifierOptions,
  ) {}

  async start(): Promise<void> {
    this.subscription = await this.log.subscribe(() => this.storedPositions(), (batch) => this.handle(batch));
  }

  async stop(): Promise<void> {
    await this.subscription?.stop();
    this.subscription = undefined;
  }

  private async storedPositions(): Promise<LogPosition[]> {
    const rows = await this.db.select().from(logPositions).where(eq(logPositions.log, notifierLogName(this.log)));
    return rows.map((row) => ({ partition: row.partition, nextOffset: row.nextOffset.toString() }));
  }

  private async handle(batch: LogBatch): Promise<void> {
    try {
      await this.options.ledgerApplied(batch.positions, LEDGER_WAIT_MS);
      const facts = await packetFacts(this.db, batch.events.map((event) => event.packetId), (countOf) => packetsNeedingClaims(batch.events, countOf));
      const events = deriveNotifications(batch.events, (packetId) => facts.get(packetId));
      const recorded = await this.db.transaction(async (tx) => {
        const fresh = await recordNotifications(tx, events, this.options.now());
        await storePositions(tx, notifierLogName(this.log), batch.positions);
        return fresh;
      });
      this.recordedEvents += recorded;
      if (recorded > 0) this.options.onRecorded?.([...new Set(events.flatMap((event) => event.recipients))], recorded);
    } catch (error) {
      this.failedBatches += 1;
      this.options.onError?.(error);
      throw error;
    }
  }
}
