// The transport's own metrics, added to the service's registry: requests by route and status,
// and how long they took.
import { Counter, Histogram, type Registry } from 'prom-client';

const REQUEST_BUCKETS_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export function createHttpMetrics(registry: Registry) {
  const labelNames = ['method', 'route', 'status'] as const;
  return {
    requests: new Counter({ name: 'hongbao_http_requests_total', help: 'HTTP requests by route and status', labelNames, registers: [registry] }),
    seconds: new Histogram({
      name: 'hongbao_http_request_duration_seconds',
      help: 'Time to answer an HTTP request, by route and status',
      labelNames,
      buckets: REQUEST_BUCKETS_SECONDS,
      registers: [registry],
    }),
  };
}
