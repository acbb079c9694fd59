// Placement over the memory hierarchy: how many layers stay resident in GPU memory, how many KV
// blocks the GPU cache tier holds, the ACT fraction of the host tier and the batch. HBM is two
// orders of magnitude faster than PCIe, so the GPU budget is the first tier; what does not fit
// streams from host memory. The search runs over a ladder of resident-layer counts and a grid of fractions
// and batches (about ten thousand cost-model evaluations), because the objective is not
// monotone in any of them: a larger batch amortises streamed weights but, once the GPU tier is
// full, streams its cache over PCIe every step. With a latency target (TPOT) only candidates whose
// predicted decode step is within it count.
import type { HardwareProfile } from './hardware.js';
import type { ModelProfile } from './model-profile.js';
import { PlanError } from './errors.js';
import {
  MIN_MINIBATCH_TOKENS,
  fmtGiB,
  gpuLayout,
  layerBuffers,
  predict,
  type GpuLayout,
  type Prediction,
  type WorkloadShape,
} from './cost-model.js';
import { capacitySequences } from './allocation.js';
import { grid } from './solver.js';

const GiB = 2 ** 30;

/** Bytes of one GPU-tier KV block across all layers (the same as a host KV block). */
export function gpuKvBlockBytes(mp: ModelProfile, blockTokens: number): number {
  return blockTokens * mp.numLayers * mp.kvBytesPerToken;
}

/**
 * Lays out the GPU budget for a given number of resident layers: reserve and head, the resident
 * layers, the layer buffers (layerBuffers), staging buffers for one mini-batch of host-tier
 * cache, and the rest as GPU KV blocks. Undefined when the parts do not fit.
 */
export function tieredLayout(
  mp: ModelProfile,
  budgetBytes: number,
  seqTokens: number,
  blockTokens: number,
  residentLayers: number,
): GpuLayout | undefined {
  const L = mp.numLayers;
  if (!(Number.isInteger(residentLayers) && residentLayers >= 0 && residentLayers <= L)) return undefined;
  const reserveBytes = Math.max(GiB, 0.03 * budgetBytes);
  const layerBufferBytes = layerBuffers(mp, residentLayers < L);
  const perTokenBuf = 2 * (mp.kvBytesPerToken + mp.actBytesPerToken);
  const cacheBufferBytes = perTokenBuf * Math.max(seqTokens, MIN_MINIBATCH_TOKENS);
  const fixed = reserveBytes + mp.headBytes + layerBufferBytes + residentLayers * mp.layerBytes + cacheBufferBytes;
  if (fixed > budgetBytes) return undefined;
  const blockBytes = gpuKvBlockBytes(mp, blockTokens);
  const gpuKvBlocks = Math.floor((budgetBytes - fixed) / blockBytes);
  return {
    budgetBytes,
    reserveBytes,
    headBytes: mp.headBytes,
    residentLayers,
    layerBufferBytes,
    cacheBufferBytes,
    miniBatchTokens: Math.floor(cacheBufferBytes / perTokenBuf),
    usedBytes: fixed + gpuKvBlocks * blockBytes,
    gpuKvBlocks,
    gpuKvTokens: gpuKvBlocks * blockTokens,
  };
}

export interface PlacementInput {
  mp: ModelProfile;
  hw: HardwareProfile;
  gpuBudgetBytes: number;
  /** Host bytes for the KV and ACT pools. */
  hostCacheBytes: number;
  workload: WorkloadShape;
  blockTokens: number;
  maxBatchCap: number;
  /** A fixed ACT fraction for the host tier, or 'auto' (ACT fraction 0 is forced when ACT is not smaller). */
  actFraction: number | 'auto';
  actAllowed: boolean;
  /** Maximum predicted decode step (time per output token), seconds. */
  sloTpotSeconds?: number;
  /** Force a number of resident layers (the bench's --resident-layers). */
  residentLayers?: number;
  /** Force the GPU tier's size in blocks (the bench's --gpu-cache-blocks); it must fit the budget. */
  gpuKvBlocks?: number;
}

export interface Placement {
  layout: GpuLayout;
  actFraction: number;
  batch: number;
  prediction: Prediction;
  /** Sequences the tiers hold at this fraction (GPU tier + host pools), before the cap and the SLO. */
  capacity: number;
  /** The best candidate for each resident-layer count (for the reason and for tests). */
  perResident: Array<{ residentLayers: number; gpuKvBlocks: number; tokensPerSecond: number }>;
  sloLimited: boolean;
}

/** Batch sizes to try up to `max`: every integer to 16, then ~12% steps, and `max` itself. */
export function batchCandidates(max: number): number[] {
  const out: number[] = [];
  for (let b = 1; b <= Math.min(16, max); b++) out.push(b);
  for (let b = 17; b < max; b = Math.max(b + 1, Math.floor(b * 1.12))) out.push(b);
  if (max >= 1 && out[out.length - 1] !== max) out.push(max);
  return out;
}

/**
 * Resident-layer counts to try: all, then L−1, L−2, L−4, …, 0, and the most that fit with no GPU
 * cache. Each streamed layer costs a whole layer load per step and frees one layer of GPU cache, so
 * the optimum sits at an end (all resident, or as many as fit beside the staging buffers) or near
 * one; the ladder checks both ends and their neighbourhood in ~log2(L) tries.
 */
export function residentCandidates(L: number, mostWithoutGpuCache: number): number[] {
  const out = new Set<number>([L, 0, Math.max(0, Math.min(L, mostWithoutGpuCache))]);
  for (let d = 1; d <= L; d *= 2) out.add(L - d);
  return [...out].sort((x, y) => y - x);
}

/** The most resident layers that fit next to the staging buffers (0 when none). */
function mostResident(mp: ModelProfile, budgetBytes: number, seq: number, blockTokens: number): number {
  for (let r = mp.numLayers; r > 0; r--) if (tieredLayout(mp, budgetBytes, seq, blockTokens, r)) return r;
  return 0;
}

/** `l` with its GPU tier cut to `blocks` (the bench's --gpu-cache-blocks); undefined when more than fit. */
export function withGpuBlocks(l: GpuLayout, blocks: number, mp: ModelProfile, blockTokens: number): GpuLayout | undefined {
  const have = l.gpuKvBlocks ?? 0;
  if (blocks > have) return undefined;
  const freed = (have - blocks) * gpuKvBlockBytes(mp, blockTokens);
  return { ...l, gpuKvBlocks: blocks, gpuKvTokens: blocks * blockTokens, usedBytes: l.usedBytes - freed };
}

/** Chooses the placement; throws PlanError when nothing fits or the SLO cannot be met. */
export function placeNode(inp: PlacementInput): Placement {
  const { mp, hw, workload, blockTokens } = inp;
  const seq = workload.promptTokens + workload.genTokens;
  const L = mp.numLayers;
  const layers =
    inp.residentLayers !== undefined
      ? [Math.min(L, Math.max(0, inp.residentLayers))]
      : residentCandidates(L, mostResident(mp, inp.gpuBudgetBytes, seq, blockTokens));
  const fractions = !inp.actAllowed ? [0] : inp.actFraction === 'auto' ? grid(0.05) : [inp.actFraction];
  let best: Placement | undefined;
  const perResident: Placement['perResident'] = [];
  let anyFit = false;
  let fastestStep = Infinity;
  let bestRejected = 0; // tokens/s of the best candidate the TPOT target ruled out
  for (const r of layers) {
    let layout = tieredLayout(mp, inp.gpuBudgetBytes, seq, blockTokens, r);
    if (layout && inp.gpuKvBlocks !== undefined) layout = withGpuBlocks(layout, inp.gpuKvBlocks, mp, blockTokens);
    if (!layout) continue;
    let bestHere: Placement | undefined;
    const gpuOnlyBatch = Math.floor((layout.gpuKvTokens ?? 0) / (workload.promptTokens + workload.genTokens / 2));
    for (const a of fractions) {
      const gpuSeqs = (layout.gpuKvTokens ?? 0) / seq;
      const capacity = gpuSeqs + capacitySequences(mp, inp.hostCacheBytes, a, seq);
      const maxB = Math.floor(Math.min(inp.maxBatchCap, capacity));
      if (maxB < 1) continue;
      anyFit = true;
      for (const b of batchCandidates(maxB)) {
        // A batch whose cache fits the GPU tier streams nothing: every fraction predicts the same.
        if (a > 0 && b <= gpuOnlyBatch) continue;
        const p = predict(mp, hw, layout, a, b, workload);
        fastestStep = Math.min(fastestStep, p.stepSeconds);
        if (inp.sloTpotSeconds !== undefined && p.stepSeconds > inp.sloTpotSeconds) {
          bestRejected = Math.max(bestRejected, p.tokensPerSecond);
          continue;
        }
        if (!bestHere || p.tokensPerSecond > bestHere.prediction.tokensPerSecond * (1 + 1e-9)) {
          bestHere = { layout, actFraction: a, batch: b, prediction: p, capacity, perResident, sloLimited: false };
        }
      }
    }
    if (!bestHere) continue;
    perResident.push({ residentLayers: r, gpuKvBlocks: layout.gpuKvBlocks ?? 0, tokensPerSecond: bestHere.prediction.tokensPerSecond });
    if (!best || bestHere.prediction.tokensPerSecond > best.prediction.tokensPerSecond * (1 + 1e-9)) best = bestHere;
  }
  if (!best) {
    if (inp.residentLayers === undefined && !tieredLayout(mp, inp.gpuBudgetBytes, seq, blockTokens, 0)) {
      gpuLayout(mp, inp.gpuBudgetBytes, seq); // throws its 'too small' PlanError naming the parts
    }
    if (!anyFit) {
      throw new PlanError(
        `no placement of ${mp.name} fits: GPU memory ${fmtGiB(inp.gpuBudgetBytes)}` +
          `${inp.gpuKvBlocks !== undefined ? ` with ${inp.gpuKvBlocks} GPU cache blocks` : ''}, host cache ${fmtGiB(inp.hostCacheBytes)}, ` +
          `${seq}-token sequences`,
      );
    }
    throw new PlanError(
      `no placement meets the TPOT target of ${(inp.sloTpotSeconds! * 1e3).toFixed(1)} ms: ` +
        `the fastest predicted decode step is ${(fastestStep * 1e3).toFixed(1)} ms`,
    );
  }
  best.sloLimited = bestRejected > best.prediction.tokensPerSecond;
  return best;
}

/** Why this many layers are resident and this many blocks are in the GPU tier. */
export function explainPlacement(mp: ModelProfile, pl: Placement, gpuBudgetBytes: number): string {
  const r = pl.layout.residentLayers;
  const g = pl.layout.gpuKvBlocks ?? 0;
  const gpuSeqs = pl.layout.gpuKvTokens ?? 0;
  const tps = (x: number) => `${x.toFixed(1)} tokens/s`;
  const slo = pl.sloLimited ? '; the TPOT target rules out faster (larger-batch) placements' : '';
  if (r === mp.numLayers) {
    const alt = pl.perResident.find((c) => c.residentLayers === r - 1);
    const why = alt ? `with ${r - 1} resident (${alt.gpuKvBlocks} GPU cache blocks) the prediction is ${tps(alt.tokensPerSecond)}` : '';
    return (
      `placement: all ${r} layers resident in ${fmtGiB(gpuBudgetBytes)}; ${g} GPU cache blocks (${gpuSeqs} tokens) ` +
      `hold the cache in HBM, batch ${pl.batch}${why ? `; ${why}` : ''}${slo}`
    );
  }
  const full = mp.numLayers;
  const fitAll = pl.perResident.find((c) => c.residentLayers === full);
  const reason = fitAll
    ? `keeping all ${full} layers resident predicts ${tps(fitAll.tokensPerSecond)} (fewer GPU cache blocks)`
    : `all ${full} layers (${fmtGiB(full * mp.layerBytes)}) do not fit ${fmtGiB(gpuBudgetBytes)} with the reserve, embeddings and staging buffers`;
  return (
    `placement: ${r}/${full} layers resident, ${full - r} stream over PCIe each step because ${reason}; ` +
    `${g} GPU cache blocks, batch ${pl.batch}${slo}`
  );
}
