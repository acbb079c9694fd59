// Operator metrics on its own prom-client Registry (never the global one, so tests and the server
// do not collide). Names follow controller-runtime's, with our prefix.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconciles = new Counter({
    name: 'hybridserve_operator_reconciles_total',
    help: 'Reconciles run, by result',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly reconcileErrors = new Counter({
    name: 'hybridserve_operator_reconcile_errors_total',
    help: 'Reconciles that failed and were requeued with backoff',
    registers: [this.registry],
  });
  readonly reconcileDuration = new Histogram({
    name: 'hybridserve_operator_reconcile_duration_seconds',
    help: 'Time of one reconcile',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly retunes = new Counter({
    name: 'hybridserve_operator_retunes_total',
    help: 'Plans rewritten by the feedback loop',
    registers: [this.registry],
  });
  readonly scrapeErrors = new Counter({
    name: 'hybridserve_operator_scrape_errors_total',
    help: "Failed GETs of a pod's /v1/hybridserve/stats",
    registers: [this.registry],
  });
  readonly feedbackErrors = new Counter({
    name: 'hybridserve_operator_feedback_errors_total',
    help: 'Feedback passes over an HSD that failed (logged)',
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: 'hybridserve_operator_leader',
    help: '1 while this replica holds the leader Lease',
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: 'hybridserve_operator_work_queue_depth',
    help: 'Keys queued or running',
    registers: [this.registry],
  });
}
