// The pure half of bench:serving (bench/serving.ts): prompts, arrival times and the summary of one
// level. No I/O here, so the figures' definitions are unit-tested. They follow vLLM's
// benchmark_serving so that results compare:
//   TTFT  time from sending the request to the first streamed token (non-streaming: the latency)
//   TPOT  per request, (latency − TTFT) ÷ (output tokens − 1), over requests with > 1 output token
//   ITL   gaps between consecutive streamed chunks
//   E2EL  time from sending the request to the last byte of the response

/** A deterministic generator (mulberry32), so a workload is reproducible from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface PromptSpec {
  /** Prompt length in tokens: fixed (min === max) or sampled uniformly in [min, max]. */
  minTokens: number;
  maxTokens: number;
  kind: 'ids' | 'text';
  /** The first sharedPrefix tokens are the same in every prompt (a prefix-caching workload). */
  sharedPrefix: number;
  /** Token ids are drawn from [FIRST_ID, vocab). */
  vocab: number;
}

/** Token ids below this are left out of prompts (special tokens: pad, bos, eos, unk of most vocabularies). */
export const FIRST_ID = 4;

/**
 * Words that common tokenizers (GPT-2 BPE, Llama's, the synthetic byte tokenizers) encode in about one
 * token each when space-separated; a text prompt of N words is about N tokens (usage reports the true count).
 */
const WORDS = [
  'the',
  'cache',
  'keeps',
  'layer',
  'input',
  'and',
  'a',
  'block',
  'of',
  'keys',
  'values',
  'for',
  'each',
  'token',
  'in',
  'host',
  'memory',
];

/** `count` prompts: token-id arrays or strings, per the spec. */
export function makePrompts(spec: PromptSpec, count: number, seed: number): Array<number[] | string> {
  if (!(spec.minTokens >= 1 && spec.maxTokens >= spec.minTokens))
    throw new RangeError(`prompt length range ${spec.minTokens}..${spec.maxTokens} is empty`);
  if (spec.sharedPrefix < 0 || spec.sharedPrefix > spec.minTokens)
    throw new RangeError(`shared prefix (${spec.sharedPrefix}) must be within 0..${spec.minTokens} (the shortest prompt)`);
  if (spec.kind === 'ids' && spec.vocab <= FIRST_ID)
    throw new RangeError(`vocabulary of ${spec.vocab} ids is too small for token-id prompts`);
  const rnd = seededRandom(seed);
  const id = () => FIRST_ID + Math.floor(rnd() * (spec.vocab - FIRST_ID));
  const word = () => WORDS[Math.floor(rnd() * WORDS.length)];
  const prefixIds = Array.from({ length: spec.sharedPrefix }, id);
  const prefixWords = Array.from({ length: spec.sharedPrefix }, word);
  const out: Array<number[] | string> = [];
  for (let i = 0; i < count; i++) {
    const n = spec.minTokens + Math.floor(rnd() * (spec.maxTokens - spec.minTokens + 1));
    if (spec.kind === 'ids') out.push([...prefixIds, ...Array.from({ length: n - spec.sharedPrefix }, id)]);
    else out.push([...prefixWords, ...Array.from({ length: n - spec.sharedPrefix }, word)].join(' '));
  }
  return out;
}

/**
 * Send times (seconds from the level's start) of `count` requests arriving as a Poisson process of
 * `rate` requests/s (exponential gaps); rate Infinity sends them all at once.
 */
export function poissonArrivals(count: number, rate: number, seed: number): number[] {
  if (!(rate > 0)) throw new RangeError(`request rate must be > 0, got ${rate}`);
  if (rate === Infinity) return Array.from({ length: count }, () => 0);
  const rnd = seededRandom(seed);
  const out: number[] = [];
  let t = 0;
  for (let i = 0; i < count; i++) {
    out.push(t);
    t += -Math.log(1 - rnd()) / rate;
  }
  return out;
}

/** What one request measured (seconds). */
export interface RequestSample {
  ok: boolean;
  error?: string;
  promptTokens: number;
  /** Every sample's generated tokens (usage.completion_tokens). */
  outputTokens: number;
  /** Samples of the request (the API's n; absent: 1): TPOT is per sample. */
  samples?: number;
  ttft: number;
  latency: number;
  /** Gaps between consecutive streamed chunks of sample 0 (empty when not streaming). */
  itl: number[];
}

/** Nearest-rank percentile (q in [0, 1]); NaN for no data. */
export function percentile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

const mean = (xs: readonly number[]): number => (xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length);

/** The summary of one level, named as vLLM's benchmark_serving names them (times in ms). */
export interface LevelSummary {
  completed: number;
  failed: number;
  duration_s: number;
  total_input_tokens: number;
  total_output_tokens: number;
  request_throughput: number;
  output_throughput: number;
  total_token_throughput: number;
  mean_ttft_ms: number;
  median_ttft_ms: number;
  p99_ttft_ms: number;
  mean_tpot_ms: number;
  median_tpot_ms: number;
  p99_tpot_ms: number;
  mean_itl_ms: number;
  median_itl_ms: number;
  p99_itl_ms: number;
  mean_e2el_ms: number;
  median_e2el_ms: number;
  p99_e2el_ms: number;
}

/** Every field of LevelSummary, in print order (the jest test checks the JSON against it). */
export const SUMMARY_FIELDS: ReadonlyArray<keyof LevelSummary> = [
  'completed',
  'failed',
  'duration_s',
  'total_input_tokens',
  'total_output_tokens',
  'request_throughput',
  'output_throughput',
  'total_token_throughput',
  'mean_ttft_ms',
  'median_ttft_ms',
  'p99_ttft_ms',
  'mean_tpot_ms',
  'median_tpot_ms',
  'p99_tpot_ms',
  'mean_itl_ms',
  'median_itl_ms',
  'p99_itl_ms',
  'mean_e2el_ms',
  'median_e2el_ms',
  'p99_e2el_ms',
];

/** Figures of one level from its samples and its wall time. NaN (null in JSON) where no request gives the figure. */
export function summarise(samples: readonly RequestSample[], durationSeconds: number): LevelSummary {
  const ok = samples.filter((s) => s.ok);
  const ms = (xs: number[]) => xs.map((x) => x * 1000);
  const ttft = ms(ok.map((s) => s.ttft));
  const perSample = (s: RequestSample) => s.outputTokens / (s.samples ?? 1);
  const tpot = ms(ok.filter((s) => perSample(s) > 1).map((s) => (s.latency - s.ttft) / (perSample(s) - 1)));
  const itl = ms(ok.flatMap((s) => s.itl));
  const e2el = ms(ok.map((s) => s.latency));
  const input = ok.reduce((n, s) => n + s.promptTokens, 0);
  const output = ok.reduce((n, s) => n + s.outputTokens, 0);
  const per = (x: number) => (durationSeconds > 0 ? x / durationSeconds : NaN);
  return {
    completed: ok.length,
    failed: samples.length - ok.length,
    duration_s: durationSeconds,
    total_input_tokens: input,
    total_output_tokens: output,
    request_throughput: per(ok.length),
    output_throughput: per(output),
    total_token_throughput: per(input + output),
    mean_ttft_ms: mean(ttft),
    median_ttft_ms: percentile(ttft, 0.5),
    p99_ttft_ms: percentile(ttft, 0.99),
    mean_tpot_ms: mean(tpot),
    median_tpot_ms: percentile(tpot, 0.5),
    p99_tpot_ms: percentile(tpot, 0.99),
    mean_itl_ms: mean(itl),
    median_itl_ms: percentile(itl, 0.5),
    p99_itl_ms: percentile(itl, 0.99),
    mean_e2el_ms: mean(e2el),
    median_e2el_ms: percentile(e2el, 0.5),
    p99_e2el_ms: percentile(e2el, 0.99),
  };
}

/** What the server itself did during a level (from /v1/hybridserve/stats before and after). */
export interface ServerDelta {
  engineSteps: number;
  prefillTokens: number;
  decodeTokens: number;
  /** Generated tokens per engine step. */
  meanBatch: number;
  preemptions: number;
  /** Engine step wall time over the level's wall time. */
  engineBusyFraction: number;
}

export interface StatsSnapshot {
  counters: { steps: number; prefillTokens: number; decodeTokens: number; wallSeconds: number };
  server: { preemptions: number };
}

export function serverDelta(before: StatsSnapshot, after: StatsSnapshot, durationSeconds: number, outputTokens: number): ServerDelta {
  const steps = after.counters.steps - before.counters.steps;
  return {
    engineSteps: steps,
    prefillTokens: after.counters.prefillTokens - before.counters.prefillTokens,
    decodeTokens: after.counters.decodeTokens - before.counters.decodeTokens,
    meanBatch: steps > 0 ? outputTokens / steps : 0,
    preemptions: after.server.preemptions - before.server.preemptions,
    engineBusyFraction: durationSeconds > 0 ? (after.counters.wallSeconds - before.counters.wallSeconds) / durationSeconds : 0,
  };
}
