// The ACT fraction solver. A fine search over the cost model (a = 0, 0.01, …, 1) rather than the
// notes' closed form, because the batch depends on the fraction: ACT blocks are smaller, so more
// sequences fit the host cache budget and each streamed layer serves more tokens. For every a we
// take the largest batch the host budget holds (continuous, so the objective is smooth in a and the
// choice does not jump with block rounding), predict generated tokens/s and keep the best; ties go
// to the smaller fraction (less recompute for the same throughput).
import type { HardwareProfile } from './hardware.js';
import type { ModelProfile } from './model-profile.js';
import { actIsSmaller } from './model-profile.js';
import { capacitySequences } from './allocation.js';
import { predict, type GpuLayout, type Prediction, type WorkloadShape } from './cost-model.js';

export interface SolveInput {
  mp: ModelProfile;
  hw: HardwareProfile;
  layout: GpuLayout;
  cacheBytes: number;
  workload: WorkloadShape;
  maxBatchCap: number;
  /** Grid step of the search (default 0.01). */
  gridStep?: number;
}

export interface Candidate {
  actFraction: number;
  /** Sequences the host cache holds at this fraction (continuous, capped). */
  batch: number;
  prediction: Prediction;
}

export interface Solution {
  actFraction: number;
  best: Candidate;
  /** The KV-only candidate (a = 0), for comparison; undefined if not even one sequence fits at a = 0. */
  kvOnly?: Candidate;
  reason: string;
}

/** Evaluates one fraction at the largest batch the cache holds; undefined when < 1 sequence fits. */
export function evaluate(inp: SolveInput, a: number): Candidate | undefined {
  const seq = inp.workload.promptTokens + inp.workload.genTokens;
  const batch = Math.min(inp.maxBatchCap, capacitySequences(inp.mp, inp.cacheBytes, a, seq));
  if (!(batch >= 1)) return undefined;
  return { actFraction: a, batch, prediction: predict(inp.mp, inp.hw, inp.layout, a, batch, inp.workload) };
}

export function grid(step = 0.01): number[] {
  const n = Math.round(1 / step);
  return Array.from({ length: n + 1 }, (_, i) => Math.round((i / n) * 1e6) / 1e6);
}

/** Chooses the fraction; returns undefined when no fraction fits one sequence in the cache. */
export function solveActFraction(inp: SolveInput): Solution | undefined {
  const kvOnly = evaluate(inp, 0);
  if (!actIsSmaller(inp.mp)) {
    if (!kvOnly) return undefined;
    return { actFraction: 0, best: kvOnly, kvOnly, reason: gqaReason(inp.mp) };
  }
  let best: Candidate | undefined;
  for (const a of grid(inp.gridStep)) {
    const c = evaluate(inp, a);
    if (c && (!best || c.prediction.tokensPerSecond > best.prediction.tokensPerSecond * (1 + 1e-9))) best = c;
  }
  if (!best) return undefined;
  return { actFraction: best.actFraction, best, kvOnly, reason: explain(inp, best, kvOnly) };
}

export function gqaReason(mp: ModelProfile): string {
  return (
    `grouped-query attention: ACT (${mp.actBytesPerToken} B/token/layer) is not smaller than KV ` +
    `(${mp.kvBytesPerToken} B/token/layer), fraction 0`
  );
}

const ms = (s: number) => `${(s * 1e3).toFixed(1)} ms`;
const ns = (s: number) => `${(s * 1e9).toFixed(2)} ns`;

/** What bounds the step at a given (not necessarily optimal) fraction, for fixed fractions. */
export function describeBound(c: Candidate): string {
  const st = c.prediction.step;
  return (
    `${st.bound}-bound: transfer ${ms(st.transferSeconds)} vs GPU ${ms(st.computeSeconds + st.recomputeSeconds)} ` +
    `(recompute ${ms(st.recomputeSeconds)}) per step at batch ${Math.floor(c.batch)}, ${c.prediction.tokensPerSecond.toFixed(1)} tokens/s`
  );
}

/** A readable reason for the chosen fraction, starting with what bounds the step. */
export function explain(inp: SolveInput, best: Candidate, kvOnly: Candidate | undefined): string {
  const { mp, hw } = inp;
  const a = best.actFraction;
  const st = best.prediction.step;
  const gpu = st.computeSeconds + st.recomputeSeconds;
  const gain = kvOnly ? ` (${(best.prediction.tokensPerSecond / kvOnly.prediction.tokensPerSecond).toFixed(2)}× KV-only)` : '';
  const batchNote = kvOnly
    ? `batch ${Math.floor(kvOnly.batch)} → ${Math.floor(best.batch)}`
    : `batch ${Math.floor(best.batch)} (KV-only fits no sequence)`;
  if (a === 0) {
    const k0 = kvOnly!.prediction.step;
    const recomputeNs = mp.recomputeFlopsPerToken / hw.gemmFlops;
    const savedNs = (mp.kvBytesPerToken - mp.actBytesPerToken) / hw.h2dBytesPerSecond;
    if (k0.transferSeconds <= k0.computeSeconds) {
      return (
        `compute-bound: with KV only the GPU's new-token work (${ms(k0.computeSeconds)}/step) already exceeds ` +
        `transfer (${ms(k0.transferSeconds)}/step); ACT would only add recompute, fraction 0`
      );
    }
    return (
      `recompute-bound: rebuilding a token's K/V from ACT costs ${ns(recomputeNs)} of GPU time per layer, ` +
      `moving its extra ${mp.kvBytesPerToken - mp.actBytesPerToken} B as KV costs ${ns(savedNs)}; ` +
      `no fraction above 0 predicts more throughput, fraction 0`
    );
  }
  if (a === 1 && st.transferSeconds >= gpu) {
    return (
      `transfer-bound: even with every token cached as ACT, PCIe transfer (${ms(st.transferSeconds)}/step) ` +
      `exceeds GPU work incl. recompute (${ms(gpu)}/step); fraction 1, ${batchNote}, ` +
      `${best.prediction.tokensPerSecond.toFixed(1)} tokens/s${gain}`
    );
  }
  if (kvOnly && kvOnly.prediction.step.bound === 'transfer') {
    const k0 = kvOnly.prediction.step;
    return (
      `transfer-bound: with KV only, PCIe transfer (${ms(k0.transferSeconds)}/step) exceeds GPU work ` +
      `(${ms(k0.computeSeconds + k0.recomputeSeconds)}/step); fraction ${a.toFixed(2)} moves the balance to ` +
      `${ms(st.transferSeconds)} transfer vs ${ms(gpu)} GPU per step, ${batchNote}, ` +
      `${best.prediction.tokensPerSecond.toFixed(1)} tokens/s${gain}`
    );
  }
  return (
    `capacity-bound: ACT blocks are ${mp.actBytesPerToken}/${mp.kvBytesPerToken} the size of KV blocks, so ` +
    `fraction ${a.toFixed(2)} fits more sequences (${batchNote}); ` +
    `${best.prediction.tokensPerSecond.toFixed(1)} tokens/s${gain}`
  );
}
