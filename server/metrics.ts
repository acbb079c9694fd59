// Prometheus metrics on the server's own registry (never prom-client's global one, so tests and
// embedders can build several apps in one process). Names per DESIGN.md §4: `hybridserve_` prefix,
// base units, counters written with `_total` (prom-client adds it only in OpenMetrics mode).
// Beside them, the vLLM names that dashboards, KEDA scalers and routers (production-stack,
// llm-d's endpoint picker) read, each with a model_name label; one observation feeds both.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, exponentialBuckets } from 'prom-client';
import type { NativeCounters, NativePoolStats } from '../native/ts/addon-types.js';
import { zeroCounters } from '../native/ts/counters.js';
import { packageVersion } from './version.js';

export interface Observer {
  observe(value: number): void;
}
export interface Incrementer {
  inc(value?: number): void;
}
/** vLLM's finished_reason label values. */
export type FinishedReason = 'stop' | 'length' | 'abort';

export interface ServerMetrics {
  registry: Registry;
  requests: Counter<'endpoint' | 'outcome'>;
  /** hybridserve_generated_tokens_total and vllm:generation_tokens_total. */
  generatedTokens: Incrementer;
  promptTokens: Incrementer;
  queueDepth: Gauge;
  runningSequences: Gauge;
  /** Latencies in seconds, from monotonic clocks; each also feeds its vllm: histogram. */
  ttft: Observer;
  tpot: Observer;
  e2e: Observer;
  /** Requests waiting and running: hybridserve_queue_depth / _running_sequences and their vllm: gauges. */
  setLoad(waiting: number, running: number): void;
  /** vllm:request_success_total{finished_reason}. */
  finished(reason: FinishedReason): void;
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
  /** One admitted request's prompt tokens, and how many of them came from the prefix cache. */
  prefixCache(queryTokens: number, hitTokens: number): void;
}

/** One observation (or increment) fed to several metrics. */
const observeAll = (...hs: Observer[]): Observer => ({
  observe: (v) => {
    for (const h of hs) h.observe(v);
  },
});
const incAll = (...cs: Array<{ inc(v: number): void }>): Incrementer => ({
  inc: (v = 1) => {
    for (const c of cs) c.inc(v);
  },
});

export function createMetrics(opts: { processMetrics?: boolean; modelName?: string } = {}): ServerMetrics {
  const registry = new Registry();
  if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry });
  const r = [registry];
  // Token latencies on CPU range from ~1 ms (tiny models) to minutes under load.
  const latency = exponentialBuckets(0.001, 2, 20); // 1 ms … ~524 s
  const m = {
    registry,
    requests: new Counter({
      name: 'hybridserve_requests_total',
      help: 'Completion requests by endpoint and outcome',
      labelNames: ['endpoint', 'outcome'] as const,
      registers: r,
    }),
    generatedTokensC: new Counter({ name: 'hybridserve_generated_tokens_total', help: 'Tokens generated', registers: r }),
    promptTokensC: new Counter({ name: 'hybridserve_prompt_tokens_total', help: 'Prompt tokens of finished requests', registers: r }),
    queueDepth: new Gauge({ name: 'hybridserve_queue_depth', help: 'Requests waiting for admission', registers: r }),
    runningSequences: new Gauge({ name: 'hybridserve_running_sequences', help: 'Sequences in the running batch', registers: r }),
    ttftH: new Histogram({
      name: 'hybridserve_time_to_first_token_seconds',
      help: 'Time from arrival to first generated token',
      buckets: latency,
      registers: r,
    }),
    tpotH: new Histogram({
      name: 'hybridserve_time_per_output_token_seconds',
      help: 'Time between consecutive generated tokens',
      buckets: latency,
      registers: r,
    }),
    e2eH: new Histogram({
      name: 'hybridserve_request_duration_seconds',
      help: 'Time from arrival to the end of a completion request',
      buckets: latency,
      registers: r,
    }),
    cacheBlocks: new Gauge({
      name: 'hybridserve_cache_blocks',
      help: 'Cache blocks by pool and state',
      labelNames: ['kind', 'state'] as const,
      registers: r,
    }),
    actFraction: new Gauge({ name: 'hybridserve_act_fraction', help: 'ACT fraction used for newly allocated cache blocks', registers: r }),
    planGeneration: new Gauge({
      name: 'hybridserve_plan_generation',
      help: 'Generation of the plan file in effect (-1 = none)',
      registers: r,
    }),
    transferBytes: new Counter({
      name: 'hybridserve_transfer_bytes_total',
      help: 'Bytes moved by kind and direction',
      labelNames: ['kind', 'direction'] as const,
      registers: r,
    }),
    phaseSeconds: new Counter({
      name: 'hybridserve_step_phase_seconds_total',
      help: 'Engine step time by phase',
      labelNames: ['phase'] as const,
      registers: r,
    }),
    recomputedTokens: new Counter({
      name: 'hybridserve_recomputed_tokens_total',
      help: 'Tokens whose K/V were recomputed from ACT',
      registers: r,
    }),
    stepSeconds: new Histogram({
      name: 'hybridserve_engine_step_seconds',
      help: 'Wall time of one engine step',
      buckets: latency,
      registers: r,
    }),
    cancelReleaseSteps: new Histogram({
      name: 'hybridserve_cancelled_release_steps',
      help: 'Engine steps between a cancellation (client gone) and its blocks being freed',
      buckets: [0, 1, 2, 4],
      registers: r,
    }),
    prefixQueries: new Counter({
      name: 'hybridserve_prefix_cache_query_tokens_total',
      help: 'Prompt tokens looked up in the prefix cache',
      registers: r,
    }),
    prefixHits: new Counter({
      name: 'hybridserve_prefix_cache_hit_tokens_total',
      help: 'Prompt tokens whose cache came from the prefix cache',
      registers: r,
    }),
    preemptions: new Counter({
      name: 'hybridserve_preemptions_total',
      help: 'Sequences preempted for lack of cache blocks (recomputed later)',
      registers: r,
    }),
  };
  const v = createVllmMetrics(registry, opts.modelName ?? 'unknown', latency);
  const buildInfo = new Gauge({
    name: 'hybridserve_build_info',
    help: 'Always 1; the labels say which build runs',
    labelNames: ['version', 'node_version'] as const,
    registers: r,
  });
  buildInfo.set({ version: packageVersion(), node_version: process.version }, 1);
  // Labelled children bound once: addStep runs after every engine step, and resolving a label set
  // (hashing it) per call is most of what an inc costs.
  const bytes = (kind: string, direction: string) => m.transferBytes.labels({ kind, direction });
  const weightsH2D = bytes('weights', 'h2d'),
    kvH2D = bytes('kv', 'h2d'),
    actH2D = bytes('act', 'h2d');
  const kvD2H = bytes('kv', 'd2h'),
    actD2H = bytes('act', 'd2h');
  const phase = (p: string) => m.phaseSeconds.labels({ phase: p });
  const transfer = phase('transfer'),
    compute = phase('compute'),
    recompute = phase('recompute'),
    idle = phase('idle');
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
    const total = p.kvBlocksTotal + p.actBlocksTotal;
    v.kvUsage.set(total > 0 ? (total - p.kvBlocksFree - p.actBlocksFree) / total : 0);
    m.cacheBlocks.set({ kind: 'kv', state: 'used' }, p.kvBlocksTotal - p.kvBlocksFree);
    m.cacheBlocks.set({ kind: 'kv', state: 'free' }, p.kvBlocksFree);
    m.cacheBlocks.set({ kind: 'act', state: 'used' }, p.actBlocksTotal - p.actBlocksFree);
    m.cacheBlocks.set({ kind: 'act', state: 'free' }, p.actBlocksFree);
  };
  // Make every labelled series visible from the first scrape.
  addStep(zeroCounters());
  m.stepSeconds.reset();
  m.planGeneration.set(-1);
  const { ttftH, tpotH, e2eH, generatedTokensC, promptTokensC, prefixQueries, prefixHits, ...rest } = m;
  return {
    ...rest,
    setLoad: (waiting: number, running: number) => {
      m.queueDepth.set(waiting);
      v.waiting.set(waiting);
      m.runningSequences.set(running);
      v.running.set(running);
    },
    ttft: observeAll(ttftH, v.ttft),
    tpot: observeAll(tpotH, v.itl),
    e2e: observeAll(e2eH, v.e2e),
    generatedTokens: incAll(generatedTokensC, v.generationTokens),
    promptTokens: incAll(promptTokensC, v.promptTokens),
    finished: (reason) => v.success.inc({ finished_reason: reason }),
    addStep,
    setPools,
    prefixCache: (query: number, hit: number) => {
      prefixQueries.inc(query);
      prefixHits.inc(hit);
      v.prefixQueries.inc(query);
      v.prefixHits.inc(hit);
    },
  };
}

/** The vLLM metric names (vLLM v1's), bound to this server's model_name. */
function createVllmMetrics(registry: Registry, modelName: string, latency: number[]) {
  const r = [registry];
  const labelNames = ['model_name'] as const;
  const model = { model_name: modelName };
  const gauge = (name: string, help: string) => new Gauge({ name, help, labelNames, registers: r }).labels(model);
  const counter = (name: string, help: string) => new Counter({ name, help, labelNames, registers: r }).labels(model);
  const histogram = (name: string, help: string) => new Histogram({ name, help, labelNames, buckets: latency, registers: r }).labels(model);
  const success = new Counter({
    name: 'vllm:request_success_total',
    help: 'Finished requests by finish reason',
    labelNames: ['model_name', 'finished_reason'] as const,
    registers: r,
  });
  for (const reason of ['stop', 'length', 'abort']) success.inc({ model_name: modelName, finished_reason: reason }, 0);
  return {
    running: gauge('vllm:num_requests_running', 'Requests in the running batch'),
    waiting: gauge('vllm:num_requests_waiting', 'Requests waiting for admission'),
    kvUsage: gauge('vllm:kv_cache_usage_perc', 'Cache usage: used blocks of both pools (KV and ACT) over all of them; 1 = 100 percent'),
    promptTokens: counter('vllm:prompt_tokens_total', 'Prompt tokens of finished requests'),
    generationTokens: counter('vllm:generation_tokens_total', 'Tokens generated'),
    ttft: histogram('vllm:time_to_first_token_seconds', 'Time from arrival to first generated token'),
    itl: histogram('vllm:inter_token_latency_seconds', 'Time between consecutive generated tokens'),
    e2e: histogram('vllm:e2e_request_latency_seconds', 'Time from arrival to the end of a request'),
    prefixQueries: counter('vllm:prefix_cache_queries_total', 'Prompt tokens looked up in the prefix cache'),
    prefixHits: counter('vllm:prefix_cache_hits_total', 'Prompt tokens found in the prefix cache'),
    success: { inc: (labels: { finished_reason: string }) => success.inc({ model_name: modelName, ...labels }) },
  };
}
