// The gateway's Prometheus metrics (prom-client, its own registry; names hybridserve_gateway_*).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export function gatewayMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'hybridserve_gateway_process_' });
  const r = { registers: [registry] };
  return {
    registry,
    requests: new Counter({
      name: 'hybridserve_gateway_requests_total',
      help: 'Requests answered, by HTTP status code',
      labelNames: ['code'],
      ...r,
    }),
    routed: new Counter({
      name: 'hybridserve_gateway_routed_total',
      help: 'Routing decisions, by reason (affinity, hash, load, round-robin)',
      labelNames: ['reason'],
      ...r,
    }),
    prefixBlocks: new Counter({
      name: 'hybridserve_gateway_prefix_matched_blocks_total',
      help: 'Prompt blocks whose prefix was last sent to the chosen pod',
      ...r,
    }),
    promptBlocks: new Counter({ name: 'hybridserve_gateway_prompt_blocks_total', help: 'Full prompt blocks routed', ...r }),
    retries: new Counter({
      name: 'hybridserve_gateway_upstream_retries_total',
      help: 'Attempts retried on another pod after a failure before the first byte',
      ...r,
    }),
    upstreamErrors: new Counter({
      name: 'hybridserve_gateway_upstream_errors_total',
      help: 'Upstream failures, by stage',
      labelNames: ['stage'],
      ...r,
    }),
    ejections: new Counter({ name: 'hybridserve_gateway_ejections_total', help: 'Pods ejected as outliers', ...r }),
    held: new Gauge({ name: 'hybridserve_gateway_held_requests', help: 'Requests waiting for a ready pod', ...r }),
    holdSeconds: new Histogram({
      name: 'hybridserve_gateway_hold_seconds',
      help: 'Time requests waited for a ready pod',
      buckets: [0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300],
      ...r,
    }),
    wakeups: new Counter({ name: 'hybridserve_gateway_scale_from_zero_total', help: 'Replicas asked for while no pod was ready', ...r }),
    endpoints: new Gauge({ name: 'hybridserve_gateway_endpoints', help: 'Pods behind the gateway, by state', labelNames: ['state'], ...r }),
    upstreamSeconds: new Histogram({
      name: 'hybridserve_gateway_upstream_headers_seconds',
      help: 'Time until the pod answered with headers',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      ...r,
    }),
  };
}
export type GatewayMetrics = ReturnType<typeof gatewayMetrics>;
