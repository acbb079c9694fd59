// Prometheus metrics on the server's own registry (never prom-client's global one, so tests and
// embedders can build several apps in one process). Names per DESIGN.md §4: `hybridserve_` prefix,
// base units, counters written with `_total` (prom-client adds it only in OpenMetrics mode).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, exponentialBuckets } from 'prom-client';
import type { NativeCounters, NativePoolStats } from '../native/ts/addon-types.js';

export interface ServerMetrics {
  registry: Registry;
  requests: Counter<'endpoint' | 'outcome'>;
  generatedTokens: Counter;
  promptTokens: Counter;
  queueDepth: Gauge;
  runningSequences: Gauge;
  ttft: Histogram;
  tpot: Histogram;
  e2e: Histogram;
  cacheBlocks: Gauge<'kind' | 'state'>;
  actFraction: Gauge;
  planGeneration: Gauge;
  transferBytes: Counter<'kind' | 'direction'>;
  phaseSeconds: Counter<'phase'>;
  recomputedTokens: Counter;
  stepSeconds: Histogram;
  preemptions: Counter;
  cancelReleaseSteps: Histogram;
  /** Adds one engine step's counters. */
  addStep(c: NativeCounters): void;
  setPools(p: NativePoolStats): void;
}

export function createMetrics(opts: { processMetrics?: boolean } = {}): ServerMetrics {
  const registry = new Registry();
  if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry });
  const r = [registry];
  // Token latencies on CPU range from ~1 ms (tiny models) to minutes under load.
  const latency = exponentialBuckets(0.001, 2, 20); // 1 ms … ~524 s
  const m = {
    registry,
    requests: new Counter({ name: 'hybridserve_requests_total', help: 'Completion requests by endpoint and outcome', labelNames: ['endpoint', 'outcome'] as const, registers: r }),
    generatedTokens: new Counter({ name: 'hybridserve_generated_tokens_total', help: 'Tokens generated', registers: r }),
    promptTokens: new Counter({ name: 'hybridserve_prompt_tokens_total', help: 'Prompt tokens of finished requests', registers: r }),
    queueDepth: new Gauge({ name: 'hybridserve_queue_depth', help: 'Requests waiting for admission', registers: r }),
    runningSequences: new Gauge({ name: 'hybridserve_running_sequences', help: 'Sequences in the running batch', registers: r }),
    ttft: new Histogram({ name: 'hybridserve_time_to_first_token_seconds', help: 'Time from arrival to first generated token', buckets: latency, registers: r }),
    tpot: new Histogram({ name: 'hybridserve_time_per_output_token_seconds', help: 'Time between consecutive generated tokens', buckets: latency, registers: r }),
    e2e: new Histogram({ name: 'hybridserve_request_duration_seconds', help: 'Time from arrival to the end of a completion request', buckets: latency, registers: r }),
    cacheBlocks: new Gauge({ name: 'hybridserve_cache_blocks', help: 'Cache blocks by pool and state', labelNames: ['kind', 'state'] as const, registers: r }),
    actFraction: new Gauge({ name: 'hybridserve_act_fraction', help: 'ACT fraction used for newly allocated cache blocks', registers: r }),
    planGeneration: new Gauge({ name: 'hybridserve_plan_generation', help: 'Generation of the plan file in effect (-1 = none)', registers: r }),
    transferBytes: new Counter({ name: 'hybridserve_transfer_bytes_total', help: 'Bytes moved by kind and direction', labelNames: ['kind', 'direction'] as const, registers: r }),
    phaseSeconds: new Counter({ name: 'hybridserve_step_phase_seconds_total', help: 'Engine step time by phase', labelNames: ['phase'] as const, registers: r }),
    recomputedTokens: new Counter({ name: 'hybridserve_recomputed_tokens_total', help: 'Tokens whose K/V were recomputed from ACT', registers: r }),
    stepSeconds: new Histogram({ name: 'hybridserve_engine_step_seconds', help: 'Wall time of one engine step', buckets: latency, registers: r }),
    cancelReleaseSteps: new Histogram({ name: 'hybridserve_cancelled_release_steps', help: 'Engine steps between a cancellation (client gone) and its blocks being freed', buckets: [0, 1, 2, 4], registers: r }),
    preemptions: new Counter({ name: 'hybridserve_preemptions_total', help: 'Sequences preempted for lack of cache blocks (recomputed later)', registers: r }),
  };
  // Labelled children bound once: addStep runs after every engine step, and resolving a label set
  // (hashing it) per call is most of what an inc costs.
  const bytes = (kind: string, direction: string) => m.transferBytes.labels({ kind, direction });
  const weightsH2D = bytes('weights', 'h2d'), kvH2D = bytes('kv', 'h2d'), actH2D = bytes('act', 'h2d');
  const kvD2H = bytes('kv', 'd2h'), actD2H = bytes('act', 'd2h');
  const phase = (p: string) => m.phaseSeconds.labels({ phase: p });
  const transfer = phase('transfer'), compute = phase('compute'), recompute = phase('recompute'), idle = phase('idle');
  const addStep = (c: NativeCounters) => {
    weightsH2D.inc(c.weightBytesH2D);
    kvH2D.inc(c.kvBytesH2D);
    actH2D.inc(c.actBytesH2D);
    kvD2H.inc(c.kvBytesD2H);
    actD2H.inc(c.actBytesD2H);
    transfer.inc(c.transferSeconds);
    compute.inc(c.computeSeconds);
    recompute.inc(c.recomputeSeconds);
    idle.inc(c.idleSeconds);
    m.recomputedTokens.inc(c.recomputedTokens);
    m.stepSeconds.observe(c.wallSeconds);
  };
  const setPools = (p: NativePoolStats) => {
    m.cacheBlocks.set({ kind: 'kv', state: 'used' }, p.kvBlocksTotal - p.kvBlocksFree);
    m.cacheBlocks.set({ kind: 'kv', state: 'free' }, p.kvBlocksFree);
    m.cacheBlocks.set({ kind: 'act', state: 'used' }, p.actBlocksTotal - p.actBlocksFree);
    m.cacheBlocks.set({ kind: 'act', state: 'free' }, p.actBlocksFree);
  };
  // Make every labelled series visible from the first scrape.
  addStep({ steps: 0, prefillTokens: 0, decodeTokens: 0, weightBytesH2D: 0, kvBytesH2D: 0, actBytesH2D: 0, kvBytesD2H: 0, actBytesD2H: 0,
    transferSeconds: 0, computeSeconds: 0, recomputeSeconds: 0, idleSeconds: 0, wallSeconds: 0, recomputedTokens: 0 });
  m.stepSeconds.reset();
  m.planGeneration.set(-1);
  return { ...m, addStep, setPools };
}
