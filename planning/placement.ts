// Placement over the memory hierarchy: how many layers stay resident in GPU memory, how many KV
// blocks the GPU cache tier holds, the ACT fraction of the host tier, the batch and the in-step
// mini-batch size. HBM is two orders of magnitude faster than PCIe, so the GPU budget is the first
// tier; what does not fit streams from host memory. The search runs over ladders of resident-layer
// counts, batches, mini-batch sizes and a grid of fractions (tens of thousands of cost-model
// evaluations, each layout computed once per batch and mini-batch size), because the objective is
// not monotone in any of them: a larger batch amortises streamed weights but needs more workspace
// and, once the GPU tier is full, streams its cache over PCIe every step; fewer mini-batches read
// the weights fewer times but need more workspace. With a latency target (TPOT) only candidates
// whose predicted decode step is within it count.
import type { HardwareProfile } from './hardware.js';
import type { ModelProfile } from './model-profile.js';
import { PlanError } from './errors.js';
import {
  MIN_MINIBATCH_TOKENS,
  fmtGiB,
  gpuLayout,
  gpuReserveBytes,
  predict,
  type GpuLayout,
  type Prediction,
  type WorkloadShape,
} from './cost-model.js';
import { capacitySequences } from './allocation.js';
import { engineLayerBufferBytes, engineWorkspaceBytes, workspaceStepRows, type WorkspaceShape } from './engine-workspace.js';
import type { LargestStep } from './plan.js';
import { grid } from './solver.js';

/** Bytes of one GPU-tier KV block across all layers (the same as a host KV block). */
export function gpuKvBlockBytes(mp: ModelProfile, blockTokens: number): number {
  return blockTokens * mp.numLayers * mp.kvBytesPerToken;
}

/** The run a GPU layout is for: the engine's workspace follows its batch, prompts, ACT fraction and mini-batch size. */
export interface RunShape extends WorkloadShape {
  batch: number;
  actFraction: number;
  blockTokens: number;
  /** Staged tokens per mini-batch (default max(sequence, MIN_MINIBATCH_TOKENS)); a bench's forced split. */
  miniBatchTokens?: number;
  /** A larger step than `batch` prompts of `promptTokens` that the workspace must also hold. */
  largestStep?: LargestStep;
}

/**
 * Lays out the GPU budget for a given number of resident layers and a run: reserve and head, the
 * resident layers, the engine's layer slots and its step workspace for this run (engine-workspace.ts,
 * with mini-batches of max(sequence, MIN_MINIBATCH_TOKENS) staged tokens), and the rest as GPU KV
 * blocks. Undefined when the parts do not fit.
 */
export function tieredLayout(mp: ModelProfile, budgetBytes: number, run: RunShape, residentLayers: number): GpuLayout | undefined {
  const L = mp.numLayers;
  if (!(Number.isInteger(residentLayers) && residentLayers >= 0 && residentLayers <= L)) return undefined;
  const seqTokens = run.promptTokens + run.genTokens;
  const reserveBytes = gpuReserveBytes(budgetBytes);
  const layerBufferBytes = engineLayerBufferBytes(mp, residentLayers < L);
  const miniBatchTokens = run.miniBatchTokens ?? Math.max(seqTokens, MIN_MINIBATCH_TOKENS);
  const shape: WorkspaceShape = {
    batch: Math.max(1, Math.ceil(run.batch), run.largestStep?.sequences ?? 0),
    promptTokens: Math.max(run.promptTokens, run.largestStep?.promptTokens ?? 0),
    seqTokens: Math.max(seqTokens, run.largestStep?.seqTokens ?? 0),
    actFraction: run.actFraction,
    blockTokens: run.blockTokens,
    miniBatchTokens,
    ...(run.largestStep?.stepTokens ? { stepTokens: run.largestStep.stepTokens } : {}),
    ...(run.largestStep?.longestPromptTokens ? { longestPromptTokens: run.largestStep.longestPromptTokens } : {}),
  };
  const workspaceBytes = engineWorkspaceBytes(mp, shape);
  const fixed = reserveBytes + mp.headBytes + layerBufferBytes + residentLayers * mp.layerBytes + workspaceBytes;
  if (fixed > budgetBytes) return undefined;
  const blockBytes = gpuKvBlockBytes(mp, run.blockTokens);
  const gpuKvBlocks = Math.floor((budgetBytes - fixed) / blockBytes);
  return {
    budgetBytes,
    reserveBytes,
    headBytes: mp.headBytes,
    residentLayers,
    layerBufferBytes,
    // What formMiniBatches may put in one mini-batch of one layer (double-buffered), inside the workspace.
    cacheBufferBytes: 2 * (mp.kvBytesPerToken + mp.actBytesPerToken) * miniBatchTokens,
    miniBatchTokens,
    workspaceBytes,
    stepTokens: workspaceStepRows(shape),
    usedBytes: fixed + gpuKvBlocks * blockBytes,
    gpuKvBlocks,
    gpuKvTokens: gpuKvBlocks * run.blockTokens,
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
  /** The largest step a server may form (planning/plan.ts NodePlanInput.largestStep); the workspace holds it. */
  largestStep?: LargestStep;
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

/** Mini-batch counts the planner tries for a step (the engine's zig-zag runs each per layer). */
const MINI_BATCH_COUNTS = [1, 2, 3, 4, 6, 8, 12, 16];

/**
 * Staged tokens per mini-batch to try for a batch of `seq`-token sequences: the batch split into
 * 1, 2, 3, 4, … mini-batches of whole sequences, none under MIN_MINIBATCH_TOKENS unless the whole
 * step is (small GEMMs run poorly). Fewer mini-batches read each layer's weights fewer times; more
 * need less workspace, which leaves GPU memory to resident layers and the GPU cache tier.
 */
export function miniBatchCandidates(batch: number, seq: number): number[] {
  const b = Math.max(1, Math.ceil(batch));
  const floor = Math.min(MIN_MINIBATCH_TOKENS, b * seq);
  const out = new Set<number>();
  for (const m of MINI_BATCH_COUNTS) {
    const t = Math.ceil(b / m) * seq;
    if (t >= floor) out.add(t);
  }
  return [...out];
}

/**
 * Resident-layer counts to try: all, then L−1, L−2, L−4, …, 0, and the most that fit with no GPU
 * cache and its own ladder below (M−1, M−2, M−4, …). Each streamed layer costs a whole layer load
 * per step and frees one layer of GPU cache, so the optimum sits at an end (all resident, or as many
 * as fit beside the engine's buffers) or near one; the ladders check both ends and their
 * neighbourhood in ~2·log2(L) tries.
 */
export function residentCandidates(L: number, mostWithoutGpuCache: number): number[] {
  const most = Math.max(0, Math.min(L, mostWithoutGpuCache));
  const out = new Set<number>([L, 0, most]);
  for (let d = 1; d <= L; d *= 2) {
    out.add(L - d);
    if (most - d >= 0) out.add(most - d);
  }
  return [...out].sort((x, y) => y - x);
}

/** The most resident layers that fit next to the slots and the workspace of `run` (0 when none). */
function mostResident(mp: ModelProfile, budgetBytes: number, run: RunShape): number {
  for (let r = mp.numLayers; r > 0; r--) if (tieredLayout(mp, budgetBytes, run, r)) return r;
  return 0;
}

/** `l` with its GPU tier cut to `blocks` (the bench's --gpu-cache-blocks); undefined when more than fit. */
export function withGpuBlocks(l: GpuLayout, blocks: number, mp: ModelProfile, blockTokens: number): GpuLayout | undefined {
  const have = l.gpuKvBlocks ?? 0;
  if (blocks > have) return undefined;
  const freed = (have - blocks) * gpuKvBlockBytes(mp, blockTokens);
  return { ...l, gpuKvBlocks: blocks, gpuKvTokens: blocks * blockTokens, usedBytes: l.usedBytes - freed };
}

/**
 * Whether a candidate at fraction `a` beats `than`: more predicted tokens/s; within 1e-9 of a tie,
 * the smaller fraction (candidates come in ascending batch order, so an equal one keeps the smaller batch).
 */
function better(p: Prediction, a: number, than: Placement): boolean {
  const x = p.tokensPerSecond;
  const y = than.prediction.tokensPerSecond;
  if (x > y * (1 + 1e-9)) return true;
  return x >= y * (1 - 1e-9) && a < than.actFraction;
}

/** Chooses the placement; throws PlanError when nothing fits or the SLO cannot be met. */
export function placeNode(inp: PlacementInput): Placement {
  const { mp, hw, workload, blockTokens } = inp;
  const seq = workload.promptTokens + workload.genTokens;
  const L = mp.numLayers;
  const fractions = !inp.actAllowed ? [0] : inp.actFraction === 'auto' ? grid(0.05) : [inp.actFraction];
  // The workspace is sized for the largest fraction the server may retune to (the fraction changes
  // live, the GPU layout only at start): 1 when ACT is allowed.
  const workspaceFraction = inp.actAllowed ? 1 : 0;
  const run = (batch: number): RunShape => ({
    ...workload,
    batch,
    actFraction: workspaceFraction,
    blockTokens,
    ...(inp.largestStep ? { largestStep: inp.largestStep } : {}),
  });
  // The ladder's "most that fit" is for the largest run: the batch cap.
  const layers =
    inp.residentLayers !== undefined
      ? [Math.min(L, Math.max(0, inp.residentLayers))]
      : residentCandidates(L, mostResident(mp, inp.gpuBudgetBytes, run(inp.maxBatchCap)));
  // The layout of one candidate: the workspace follows its batch and fraction, the GPU tier gets the rest.
  const layoutFor = (r: number, b: number, miniBatchTokens?: number): GpuLayout | undefined => {
    const l = tieredLayout(mp, inp.gpuBudgetBytes, { ...run(b), ...(miniBatchTokens ? { miniBatchTokens } : {}) }, r);
    return l && inp.gpuKvBlocks !== undefined ? withGpuBlocks(l, inp.gpuKvBlocks, mp, blockTokens) : l;
  };
  const sequencesHeld = (l: GpuLayout, a: number) => (l.gpuKvTokens ?? 0) / seq + capacitySequences(mp, inp.hostCacheBytes, a, seq);
  let best: Placement | undefined;
  const perResident: Placement['perResident'] = [];
  let anyFit = false;
  let fastestStep = Infinity;
  let bestRejected = 0; // tokens/s of the best candidate the TPOT target ruled out
  for (const r of layers) {
    let bestHere: Placement | undefined;
    // The layout does not depend on the fraction (its workspace is sized for workspaceFraction), so
    // each (batch, mini-batch size) is laid out once. The smallest run leaves the GPU tier the most
    // room: its capacity at the most compact fraction bounds the batch.
    const smallest = layoutFor(r, 1);
    if (!smallest) continue;
    const maxB = Math.floor(Math.min(inp.maxBatchCap, Math.max(...fractions.map((a) => sequencesHeld(smallest, a)))));
    for (const b of batchCandidates(maxB)) {
      for (const miniBatchTokens of miniBatchCandidates(b, seq)) {
        const layout = layoutFor(r, b, miniBatchTokens);
        if (!layout) continue;
        // A batch whose cache fits the GPU tier streams nothing: every fraction predicts the same.
        const gpuOnlyBatch = Math.floor((layout.gpuKvTokens ?? 0) / (workload.promptTokens + workload.genTokens / 2));
        for (const a of fractions) {
          if (a > 0 && b <= gpuOnlyBatch) continue;
          const capacity = sequencesHeld(layout, a);
          if (b > capacity) continue;
          anyFit = true;
          const p = predict(mp, hw, layout, a, b, workload);
          fastestStep = Math.min(fastestStep, p.stepSeconds);
          if (inp.sloTpotSeconds !== undefined && p.stepSeconds > inp.sloTpotSeconds) {
            bestRejected = Math.max(bestRejected, p.tokensPerSecond);
            continue;
          }
          if (!bestHere || better(p, a, bestHere)) {
            bestHere = { layout, actFraction: a, batch: b, prediction: p, capacity, perResident, sloLimited: false };
          }
        }
      }
    }
    if (!bestHere) continue;
    perResident.push({
      residentLayers: r,
      gpuKvBlocks: bestHere.layout.gpuKvBlocks ?? 0,
      tokensPerSecond: bestHere.prediction.tokensPerSecond,
    });
    if (!best || bestHere.prediction.tokensPerSecond > best.prediction.tokensPerSecond * (1 + 1e-9)) best = bestHere;
  }
  if (!best) {
    if (inp.residentLayers === undefined && !tieredLayout(mp, inp.gpuBudgetBytes, run(1), 0)) {
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
    : `all ${full} layers (${fmtGiB(full * mp.layerBytes)}) do not fit ${fmtGiB(gpuBudgetBytes)} with the reserve, embeddings, layer slots and the engine's workspace`;
  return (
    `placement: ${r}/${full} layers resident, ${full - r} stream over PCIe each step because ${reason}; ` +
    `${g} GPU cache blocks, batch ${pl.batch}${slo}`
  );
}
