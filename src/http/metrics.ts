// Prometheus metrics: one registry per app, so several apps (tests) can live in one process.
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { Hongbao } from '../hongbao.js';

export function createMetrics(hongbao: Hongbao) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({
    name: 'hongbao_http_requests_total',
    help: 'HTTP requests by route and status',
    labelNames: ['method', 'route', 'status'],
    registers: [registry],
  });
  const opens = new Counter({ name: 'hongbao_opens_total', help: 'Opens by outcome state', labelNames: ['state'], registers: [registry] });
  new Gauge({
    name: 'hongbao_engine_actors',
    help: 'Packet actors in memory',
    registers: [registry],
    collect() {
      this.set(hongbao.engine.stats.actors);
    },
  });
  new Gauge({
    name: 'hongbao_engine_opens_in_flight',
    help: 'Opens in progress',
    registers: [registry],
    collect() {
      this.set(hongbao.engine.stats.opensInFlight);
    },
  });
  new Gauge({
    name: 'hongbao_log_appends',
    help: 'Durable appends to the event log (group commits)',
    registers: [registry],
    collect() {
      this.set(hongbao.committer.stats.appends);
    },
  });
  new Gauge({
    name: 'hongbao_log_events_appended',
    help: 'Events made durable in the event log',
    registers: [registry],
    collect() {
      this.set(hongbao.committer.stats.events);
    },
  });
  new Gauge({
    name: 'hongbao_ledger_events_applied',
    help: 'Events applied by the ledger consumer since start',
    registers: [registry],
    collect() {
      this.set(hongbao.consumer.appliedEvents);
    },
  });
  new Gauge({
    name: 'hongbao_ledger_failed_batches',
    help: 'Ledger batches that failed and were retried, since start',
    registers: [registry],
    collect() {
      this.set(hongbao.consumer.failedBatches);
    },
  });
  return { registry, requests, opens };
}
