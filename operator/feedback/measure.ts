// Turns two scrapes of a pod's /v1/hybridserve/stats into measured figures (pure): deltas of the
// engine counters give PhaseTimes for the retuner and tokens/s for status and autoscaling. A counter
// that went backwards means the server restarted; that pair is discarded rather than trusted.
import type { PhaseTimes } from '../../planning/index.js';

export interface StatsSnapshot {
  actFraction: number;
  planGeneration: number;
  uptimeSeconds: number;
  queueDepth: number;
  runningSequences: number;
  requestsTotal: number;
  generatedTokensTotal: number;
  promptTokensTotal: number;
  counters: {
    steps: number;
    transferSeconds: number;
    computeSeconds: number;
    recomputeSeconds: number;
    idleSeconds: number;
    [k: string]: number;
  };
}

export interface PodDelta extends PhaseTimes {
  seconds: number;
  generatedTokens: number;
  queueDepth: number;
  actFraction: number;
}

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : NaN);

/** Validates a decoded stats body; undefined when it is not the contract's shape. */
export function parseStats(body: unknown): StatsSnapshot | undefined {
  if (!body || typeof body !== 'object') return undefined;
  const b = body as Record<string, unknown>;
  const c = (b.counters ?? {}) as Record<string, unknown>;
  const s: StatsSnapshot = {
    actFraction: num(b.actFraction),
    planGeneration: num(b.planGeneration ?? 0),
    uptimeSeconds: num(b.uptimeSeconds),
    queueDepth: num(b.queueDepth ?? 0),
    runningSequences: num(b.runningSequences ?? 0),
    requestsTotal: num(b.requestsTotal ?? 0),
    generatedTokensTotal: num(b.generatedTokensTotal ?? 0),
    promptTokensTotal: num(b.promptTokensTotal ?? 0),
    counters: {
      steps: num(c.steps),
      transferSeconds: num(c.transferSeconds),
      computeSeconds: num(c.computeSeconds),
      recomputeSeconds: num(c.recomputeSeconds),
      idleSeconds: num(c.idleSeconds),
    },
  };
  const required = [
    s.uptimeSeconds,
    s.counters.steps,
    s.counters.transferSeconds,
    s.counters.computeSeconds,
    s.counters.recomputeSeconds,
    s.counters.idleSeconds,
  ];
  return required.every(Number.isFinite) ? s : undefined;
}

export function podDelta(prev: StatsSnapshot, cur: StatsSnapshot): PodDelta | undefined {
  const seconds = cur.uptimeSeconds - prev.uptimeSeconds;
  const d = (k: 'steps' | 'transferSeconds' | 'computeSeconds' | 'recomputeSeconds' | 'idleSeconds') => cur.counters[k] - prev.counters[k];
  const gen = cur.generatedTokensTotal - prev.generatedTokensTotal;
  const parts = [seconds, d('steps'), d('transferSeconds'), d('computeSeconds'), d('recomputeSeconds'), d('idleSeconds'), gen];
  if (!(seconds > 0) || parts.some((x) => !Number.isFinite(x) || x < 0)) return undefined; // restarted or clock went back
  return {
    seconds,
    steps: d('steps'),
    transferSeconds: d('transferSeconds'),
    computeSeconds: d('computeSeconds'),
    recomputeSeconds: d('recomputeSeconds'),
    idleSeconds: d('idleSeconds'),
    generatedTokens: gen,
    queueDepth: cur.queueDepth,
    actFraction: cur.actFraction,
  };
}

export interface GroupMeasurement extends PhaseTimes {
  tokensPerSecond: number;
  queueDepth: number;
  pods: number;
}

/** Sums phase times over the group's pods; tokens/s is the group total; queueDepth the mean per pod. */
export function aggregate(deltas: readonly PodDelta[]): GroupMeasurement | undefined {
  if (deltas.length === 0) return undefined;
  const sum = (f: (d: PodDelta) => number) => deltas.reduce((a, d) => a + f(d), 0);
  return {
    steps: sum((d) => d.steps),
    transferSeconds: sum((d) => d.transferSeconds),
    computeSeconds: sum((d) => d.computeSeconds),
    recomputeSeconds: sum((d) => d.recomputeSeconds),
    idleSeconds: sum((d) => d.idleSeconds),
    tokensPerSecond: sum((d) => d.generatedTokens / d.seconds),
    queueDepth: sum((d) => d.queueDepth) / deltas.length,
    pods: deltas.length,
  };
}
