// Prometheus metrics of the service, as Prometheus expects them: things that only grow are
// counters named `_total`, latencies are histograms in seconds, the ledger's lag is a gauge.
// One registry per service, so several services (tests) can live in one process.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Engine } from '../engine/engine.js';
import type { ConsumerPort } from '../ledger/ledger-consumer.js';
import { compareOffsets } from '../log/event-log.js';
import type { AppendLog } from './storage-thread.js';
import type { Committer } from '../log/group-commit.js';
import type { SlotWriters } from '../log/slot-writers.js';

/** Buckets for an in-memory decision up to a durable write over the network. */
const LATENCY_BUCKETS_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export interface MetricSources {
  readonly engine: Engine;
  readonly committer: Committer;
  /** In a cluster: this node's slot writers. */
  readonly slots?: SlotWriters | undefined;
  readonly consumer: ConsumerPort;
  readonly log: AppendLog;
  /** Redis commands that failed (the request went on without the cache). */
  readonly cacheFailures: { readonly count: number };
  /** Live event streams served now. */
  readonly openStreams?: () => number;
  /** Webhook deliveries waiting for a retry (read from the database at scrape time). */
  readonly retriesPending?: () => Promise<number>;
}

/** A counter whose count is kept by the part itself (a stats field): read at scrape time. */
function countedBy(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

export function createServiceMetrics(sources: MetricSources) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const opens = new Counter({ name: 'hongbao_opens_total', help: 'Opens by outcome state', labelNames: ['state'], registers: [registry] });
  const openSeconds = new Histogram({
    name: 'hongbao_open_duration_seconds',
    help: 'Time to answer an open (拆), including the durable write of a claim',
    buckets: LATENCY_BUCKETS_SECONDS,
    registers: [registry],
  });
  const sendSeconds = new Histogram({
    name: 'hongbao_send_duration_seconds',
    help: 'Time to send a packet (debit, store, idempotency record)',
    buckets: LATENCY_BUCKETS_SECONDS,
    registers: [registry],
  });
  const ledgerApplySeconds = new Histogram({
    name: 'hongbao_ledger_apply_duration_seconds',
    help: 'Time the ledger consumer takes to apply one batch of log events in one transaction',
    buckets: LATENCY_BUCKETS_SECONDS,
    registers: [registry],
  });
  new Gauge({
    name: 'hongbao_engine_actors',
    help: 'Packet actors in memory',
    registers: [registry],
    collect() {
      this.set(sources.engine.stats.actors);
    },
  });
  new Gauge({
    name: 'hongbao_engine_opens_in_flight',
    help: 'Opens in progress',
    registers: [registry],
    collect() {
      this.set(sources.engine.stats.opensInFlight);
    },
  });
  new Gauge({
    name: 'hongbao_ledger_lag_events',
    help: 'Events in the log that the ledger has not applied yet (Σ over partitions of head − applied position)',
    registers: [registry],
    async collect() {
      const heads = await sources.log.heads();
      let lag = 0n;
      for (const head of heads) {
        const applied = sources.consumer.appliedPosition(head.partition);
        if (compareOffsets(head.nextOffset, applied) > 0) lag += BigInt(head.nextOffset) - BigInt(applied);
      }
      this.set(Number(lag));
    },
  });
  countedBy(registry, 'hongbao_log_appends_total', 'Durable appends to the event log (group commits)', () => sources.committer.stats.appends);
  countedBy(registry, 'hongbao_log_events_appended_total', 'Events made durable in the event log', () => sources.committer.stats.events);
  countedBy(registry, 'hongbao_ledger_events_applied_total', 'Events applied by the ledger consumer', () => sources.consumer.appliedEvents);
  countedBy(registry, 'hongbao_ledger_failed_batches_total', 'Ledger batches that failed and were retried', () => sources.consumer.failedBatches);
  countedBy(registry, 'hongbao_ledger_position_read_failures_total', 'Reads of the stored ledger positions that failed and were retried', () => sources.consumer.failedPositionReads);
  countedBy(registry, 'hongbao_log_read_failures_total', 'Reads of the table log that failed and were retried', () =>
    'readFailures' in sources.log && typeof sources.log.readFailures === 'number' ? sources.log.readFailures : 0,
  );
  countedBy(registry, 'hongbao_ledger_conflicts_total', 'Conflicting duplicates the ledger recorded (see reconciliation)', () => sources.consumer.conflicts);
  countedBy(registry, 'hongbao_cache_failures_total', 'Redis commands that failed; the request was answered without the cache', () => sources.cacheFailures.count);
  const slots = sources.slots;
  if (slots !== undefined) {
    countedBy(registry, 'hongbao_slot_fenced_appends_total', 'Appends the broker refused because another node took the slot (none of them was acknowledged)', () => slots.stats.fencedAppends);
    countedBy(registry, 'hongbao_slot_failed_appends_total', 'Appends that failed otherwise (outcome unknown; the slot was taken over afresh)', () => slots.stats.failedAppends);
    countedBy(registry, 'hongbao_slot_takeovers_total', 'Slots this node took over (fence, then catch-up)', () => slots.stats.takeovers);
    new Gauge({
      name: 'hongbao_slots_owned',
      help: 'Slots (log partitions) this node owns now',
      registers: [registry],
      collect() {
        this.set(slots.owned().length);
      },
    });
  }
  const webhookDeliveries = new Counter({
    name: 'hongbao_webhook_deliveries_total',
    help: 'Webhook delivery attempts by outcome: delivered (2xx), failed (retried later), dead (given up after the retry horizon)',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const webhookLagSeconds = new Histogram({
    name: 'hongbao_webhook_delivery_lag_seconds',
    help: 'From the event (an open, a refund…) to its webhook delivered with a 2xx',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600],
    registers: [registry],
  });
  new Gauge({
    name: 'hongbao_event_streams_open',
    help: 'Live event streams (GET /v1/me/events) this process serves now',
    registers: [registry],
    collect() {
      this.set(sources.openStreams?.() ?? 0);
    },
  });
  if (sources.retriesPending !== undefined) {
    const retriesPending = sources.retriesPending;
    new Gauge({
      name: 'hongbao_webhook_retries_pending',
      help: 'Webhook deliveries waiting for a retry (attempted, not yet delivered)',
      registers: [registry],
      async collect() {
        this.set(await retriesPending().catch(() => 0));
      },
    });
  }
  const payments = new Counter({
    name: 'hongbao_payment_signals_total',
    help: 'Payment signals by source (return, notification, query) and what they changed (awaiting_funds, funded, cancelled, late_credit, none)',
    labelNames: ['source', 'change'],
    registers: [registry],
  });
  const paymentRefusals = new Counter({
    name: 'hongbao_payment_refusals_total',
    help: 'Payment messages refused (forged, stale, replayed, for another order), by source and reason',
    labelNames: ['source', 'reason'],
    registers: [registry],
  });
  const resweptClaims = new Counter({
    name: 'hongbao_payment_reswept_claims_total',
    help: 'Held claims the second sweep credited (0 unless a claim was booked after its packet was funded)',
    registers: [registry],
  });
  return { registry, opens, openSeconds, sendSeconds, ledgerApplySeconds, payments, paymentRefusals, resweptClaims, webhookDeliveries, webhookLagSeconds };
}

export type ServiceMetrics = ReturnType<typeof createServiceMetrics>;
