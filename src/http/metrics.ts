// The transport's own metrics, added to the service's registry: requests by route and status,
// how long they took, and the requests passed to a packet's owner node.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

const REQUEST_BUCKETS_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** How a request for a packet owned elsewhere ended (forward.ts). */
export const FORWARD_OUTCOMES = ['ok', 'timeout', 'unreachable', 'overloaded', 'busy'] as const;
export type ForwardOutcome = (typeof FORWARD_OUTCOMES)[number];

export function createHttpMetrics(registry: Registry) {
  const labelNames = ['method', 'route', 'status'] as const;
  const forwards = new Counter({
    name: 'hongbao_forwards_total',
    help:
      'Requests for a packet owned by another node, by outcome: ok (the owner answered, whatever it said), timeout, ' +
      'unreachable (refused, reset), overloaded (too many forwards in flight), busy (handover, or a forwarded request that reached a non-owner)',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  // Every outcome is listed at 0 from the start: a rate over a series that appears late misses its first step.
  for (const outcome of FORWARD_OUTCOMES) forwards.inc({ outcome }, 0);
  return {
    requests: new Counter({ name: 'hongbao_http_requests_total', help: 'HTTP requests by route and status', labelNames, registers: [registry] }),
    seconds: new Histogram({
      name: 'hongbao_http_request_duration_seconds',
      help: 'Time to answer an HTTP request, by route and status',
      labelNames,
      buckets: REQUEST_BUCKETS_SECONDS,
      registers: [registry],
    }),
    forwards,
    forwardsInFlight: new Gauge({ name: 'hongbao_forwards_in_flight', help: 'Requests passed to their packet’s owner node and not yet answered', registers: [registry] }),
  };
}

export type HttpMetrics = ReturnType<typeof createHttpMetrics>;
