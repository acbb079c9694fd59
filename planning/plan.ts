// planNode: the whole plan for one node (one GPU per pod): GPU layout, host memory (step 1), the ACT
// fraction (solver or fixed), the KV/ACT pools (step 2) and the predicted performance.
import type { ModelConfig } from '../model/types.js';
import { PlanError } from './errors.js';
import { validateHardware, type HardwareProfile } from './hardware.js';
import { actIsSmaller, modelProfile, type WeightDtype } from './model-profile.js';
import { hostTierTokens, predict, fmtGiB } from './cost-model.js';
import { hostLayout, podMemoryResources, splitCache, fractionBoundsForPools } from './allocation.js';
import { describeBound, gqaReason } from './solver.js';
import { explainPlacement, gpuKvBlockBytes, placeNode } from './placement.js';

export interface NodePlanInput {
  model: ModelConfig;
  hardware: HardwareProfile;
  /** The pod's host memory budget (weights + cache + runtime). */
  hostMemoryBytes: number;
  /** Default: hardware.hbmBytes. */
  gpuMemoryBytes?: number;
  actFraction: number | 'auto';
  /** Default 16. */
  blockTokens?: number;
  /** Workload shape, defaults 512 / 128. */
  promptTokens?: number;
  genTokens?: number;
  /** Default 2 (fp16). */
  elementBytes?: number;
  /** Format of the layers' GEMM weights (default fp16): weight bytes, resident layers and batch follow it. */
  weightDtype?: WeightDtype;
  /** Upper bound on the batch (default 1024): beyond it latency grows for little gain. */
  maxBatchCap?: number;
  /** Target time per output token (seconds): the plan maximises throughput subject to its predicted decode step ≤ this. */
  sloTpotSeconds?: number;
  /** Force the placement (benches): resident layers and GPU cache blocks. */
  residentLayers?: number;
  gpuKvBlocks?: number;
  /**
   * The largest step the engine may be given, when a server may form larger steps than the planned
   * batch of planned prompts (more sequences, longer prompts): the engine's workspace is laid out for
   * it. Default: the candidate batch of the workload's prompts.
   */
  largestStep?: LargestStep;
}

/** The most sequences, the longest prompt and the longest sequence a step may hold (engine-workspace.ts sizes for them). */
export interface LargestStep {
  sequences: number;
  promptTokens: number;
  /** Prompt + generated tokens of the longest sequence. */
  seqTokens: number;
  /** The most new tokens a step computes (the server's --max-step-tokens; absent: sequences × promptTokens). */
  stepTokens?: number;
  /** One prompt this long may come alone (a server's window less one), beyond the others' promptTokens. */
  longestPromptTokens?: number;
}

export interface SweepPoint {
  actFraction: number;
  maxBatch: number;
  predictedStepSeconds: number;
  predictedTokensPerSecond: number;
}

export interface Plan {
  actFraction: number;
  hostMemoryBytes: number;
  kvBlocks: number;
  actBlocks: number;
  blockTokens: number;
  maxBatch: number;
  predictedStepSeconds: number;
  predictedTokensPerSecond: number;
  reason: string;
  memoryRequestBytes: number;
  memoryLimitBytes: number;
  weightBytes: number;
  /** Format of the layer weights that weightBytes counts (absent in plans built elsewhere: fp16). */
  weightDtype?: WeightDtype;
  cacheBytes: number;
  // Beyond the contract:
  model: string;
  gpuProduct: string;
  gpuMemoryBytes: number;
  /** What the GPU layout uses of gpuMemoryBytes (reserve, embeddings, resident layers, buffers). */
  gpuUsedBytes: number;
  runtimeBytes: number;
  kvBlockBytes: number;
  actBlockBytes: number;
  residentLayers: number;
  numLayers: number;
  /**
   * KV blocks of the GPU cache tier (read in place, never streamed), and the bytes of one. Always
   * set by planNode; optional so that plans built elsewhere (the operator's placeholders) stay valid.
   */
  gpuKvBlocks?: number;
  gpuKvBlockBytes?: number;
  /** The TPOT target the plan honours, when one was given. */
  sloTpotSeconds?: number;
  /** Why this many layers are resident and this many blocks are in the GPU tier. */
  placementReason?: string;
  miniBatchTokens: number;
  /** The CUDA engine's step workspace for this plan's batch and mini-batches (planning/engine-workspace.ts); absent when not laid out. */
  gpuWorkspaceBytes?: number;
  /**
   * New tokens the largest step that workspace holds may compute (workspaceStepRows): a server keeps
   * its steps within it (PlanFile.maxStepTokens); absent when not laid out.
   */
  maxStepTokens?: number;
  /** Per-layer GPU working bytes of one mini-batch: the `maxBytes` for formMiniBatches. */
  miniBatchBytes: number;
  promptTokens: number;
  genTokens: number;
  predictedPrefillSeconds: number;
  predictedDecodeTokensPerSecond: number;
  /** Per step, summed over layers (phases overlap within a layer). */
  predictedPhases: { transferSeconds: number; computeSeconds: number; recomputeSeconds: number; idleSeconds: number };
  bound: 'transfer' | 'compute' | 'recompute';
  /** Fractions the pools can serve at maxBatch (bounds for live retuning). */
  retuneBounds: { min: number; max: number };
  /** The same plan at a = 0, 0.1, …, 1 (block-rounded batch). */
  sweep: SweepPoint[];
}

function checkInt(v: number, what: string, min: number): number {
  if (!(Number.isInteger(v) && v >= min)) throw new PlanError(`${what} must be an integer ≥ ${min}, got ${v}`);
  return v;
}

export function planNode(input: NodePlanInput): Plan {
  const elementBytes = input.elementBytes ?? 2;
  const mp = modelProfile(input.model, elementBytes, input.weightDtype);
  const hw = input.hardware;
  if (!hw) throw new PlanError('hardware profile is required');
  validateHardware(hw);
  const blockTokens = checkInt(input.blockTokens ?? 16, 'blockTokens', 1);
  const promptTokens = checkInt(input.promptTokens ?? 512, 'promptTokens', 1);
  const genTokens = checkInt(input.genTokens ?? 128, 'genTokens', 1);
  const maxBatchCap = checkInt(input.maxBatchCap ?? 1024, 'maxBatchCap', 1);
  const seqTokens = promptTokens + genTokens;
  if (seqTokens > input.model.maxPositions) {
    throw new PlanError(`prompt + generated tokens (${seqTokens}) exceed ${mp.name}'s maximum of ${input.model.maxPositions} positions`);
  }
  const gpuMemoryBytes = input.gpuMemoryBytes ?? hw.hbmBytes;
  if (!(Number.isFinite(gpuMemoryBytes) && gpuMemoryBytes > 0))
    throw new PlanError(`GPU memory must be a positive number of bytes, got ${gpuMemoryBytes}`);
  if (gpuMemoryBytes > hw.hbmBytes) {
    throw new PlanError(`GPU memory budget ${fmtGiB(gpuMemoryBytes)} exceeds the ${fmtGiB(hw.hbmBytes)} of ${hw.product}`);
  }
  const fixed = input.actFraction;
  if (fixed !== 'auto' && !(typeof fixed === 'number' && fixed >= 0 && fixed <= 1)) {
    throw new PlanError(`ACT fraction must be 'auto' or a number in [0, 1], got ${String(fixed)}`);
  }

  if (input.sloTpotSeconds !== undefined && !(Number.isFinite(input.sloTpotSeconds) && input.sloTpotSeconds > 0)) {
    throw new PlanError(`TPOT target must be a positive number of seconds, got ${input.sloTpotSeconds}`);
  }
  if (input.residentLayers !== undefined) checkInt(input.residentLayers, 'residentLayers', 0);
  if (input.gpuKvBlocks !== undefined) checkInt(input.gpuKvBlocks, 'gpuKvBlocks', 0);
  const host = hostLayout(mp, input.hostMemoryBytes);
  const workload = { promptTokens, genTokens };
  const placement = placeNode({
    mp,
    hw,
    gpuBudgetBytes: gpuMemoryBytes,
    hostCacheBytes: host.cacheBytes,
    workload,
    blockTokens,
    maxBatchCap,
    actFraction: fixed,
    actAllowed: fixed !== 'auto' || actIsSmaller(mp),
    sloTpotSeconds: input.sloTpotSeconds,
    residentLayers: input.residentLayers,
    gpuKvBlocks: input.gpuKvBlocks,
    ...(input.largestStep ? { largestStep: input.largestStep } : {}),
  });
  const { layout } = placement;
  const actFraction = placement.actFraction;
  const gpuKvBlocks = layout.gpuKvBlocks ?? 0;
  const candidate = { actFraction, batch: placement.batch, prediction: placement.prediction };
  const streamsCache = hostTierTokens(layout, placement.batch * (promptTokens + genTokens / 2)) > 0;
  let reason: string;
  if (fixed !== 'auto') {
    const gqa = actIsSmaller(mp) ? '' : `; ${gqaReason(mp).replace(/, fraction 0$/, '')}`;
    reason = `fixed: fraction ${fixed} as requested; ${describeBound(candidate)}${gqa}`;
  } else if (!actIsSmaller(mp)) {
    reason = gqaReason(mp);
  } else if (!streamsCache) {
    reason =
      `${describeBound(candidate)}; the batch's cache fits the GPU tier (${gpuKvBlocks} blocks), nothing streams, ` +
      'ACT would only add recompute, fraction 0';
  } else {
    reason = `${describeBound(candidate)}; fraction ${actFraction.toFixed(2)} is the best of the grid for the host tier`;
  }
  const placementReason = explainPlacement(mp, placement, gpuMemoryBytes);

  const split = splitCache(mp, host.cacheBytes, actFraction, blockTokens, seqTokens, maxBatchCap);
  const gpuSeqs = Math.floor(gpuKvBlocks / Math.ceil(seqTokens / blockTokens));
  const maxBatch = Math.min(placement.batch, gpuSeqs + split.maxBatch);
  if (maxBatch < 1) throw tooSmall(mp.name, host.cacheBytes, seqTokens);
  const pred = predict(mp, hw, layout, actFraction, maxBatch, workload);
  const res = podMemoryResources(input.hostMemoryBytes);

  const sweep: SweepPoint[] = [];
  for (let i = 0; i <= 10; i++) {
    const a = i / 10;
    const s = splitCache(mp, host.cacheBytes, a, blockTokens, seqTokens, maxBatchCap);
    const b = Math.min(maxBatchCap, s.maxBatch + gpuSeqs);
    if (b < 1) continue;
    const p = predict(mp, hw, layout, a, b, workload);
    sweep.push({ actFraction: a, maxBatch: b, predictedStepSeconds: p.stepSeconds, predictedTokensPerSecond: p.tokensPerSecond });
  }

  return {
    actFraction,
    hostMemoryBytes: input.hostMemoryBytes,
    kvBlocks: split.kvBlocks,
    actBlocks: split.actBlocks,
    blockTokens,
    maxBatch,
    predictedStepSeconds: pred.stepSeconds,
    predictedTokensPerSecond: pred.tokensPerSecond,
    reason:
      mp.weightDtype === 'fp16'
        ? reason
        : `${reason}; ${mp.weightDtype} weights (${fmtGiB(host.weightBytes)}, ${mp.weightElementBytes.toFixed(2)} bytes per layer weight)`,
    memoryRequestBytes: res.requestBytes,
    memoryLimitBytes: res.limitBytes,
    weightBytes: host.weightBytes,
    weightDtype: mp.weightDtype,
    cacheBytes: host.cacheBytes,
    model: mp.name,
    gpuProduct: hw.product,
    gpuMemoryBytes,
    gpuUsedBytes: layout.usedBytes,
    runtimeBytes: host.runtimeBytes,
    kvBlockBytes: split.kvBlockBytes,
    actBlockBytes: split.actBlockBytes,
    residentLayers: layout.residentLayers,
    numLayers: mp.numLayers,
    gpuKvBlocks,
    gpuKvBlockBytes: gpuKvBlockBytes(mp, blockTokens),
    ...(input.sloTpotSeconds !== undefined ? { sloTpotSeconds: input.sloTpotSeconds } : {}),
    placementReason,
    miniBatchTokens: layout.miniBatchTokens,
    ...(layout.workspaceBytes !== undefined ? { gpuWorkspaceBytes: layout.workspaceBytes } : {}),
    ...(layout.stepTokens !== undefined ? { maxStepTokens: layout.stepTokens } : {}),
    miniBatchBytes: Math.floor(layout.cacheBufferBytes / 2),
    promptTokens,
    genTokens,
    predictedPrefillSeconds: pred.prefillSeconds,
    predictedDecodeTokensPerSecond: pred.decodeTokensPerSecond,
    predictedPhases: {
      transferSeconds: pred.step.transferSeconds,
      computeSeconds: pred.step.computeSeconds,
      recomputeSeconds: pred.step.recomputeSeconds,
      idleSeconds: pred.step.idleSeconds,
    },
    bound: pred.step.bound,
    retuneBounds: actIsSmaller(mp)
      ? fractionBoundsForPools(split.kvBlocks, split.actBlocks, Math.max(1, maxBatch - gpuSeqs), seqTokens, blockTokens)
      : { min: 0, max: 0 },
    sweep,
  };
}

function tooSmall(model: string, cacheBytes: number, seqTokens: number): PlanError {
  return new PlanError(
    `host cache budget ${fmtGiB(cacheBytes)} cannot hold one sequence of ${seqTokens} tokens of ${model}; ` +
      'raise the host memory or shorten prompt/generation',
  );
}

/** The plan file the operator writes (ConfigMap key plan.json) and the server reads. */
export function planFile(
  plan: Plan,
  generation: number,
): {
  actFraction: number;
  kvBlocks: number;
  actBlocks: number;
  blockTokens: number;
  maxBatch: number;
  generation: number;
  reason: string;
  gpuKvBlocks: number;
  residentLayers: number;
} {
  return {
    actFraction: plan.actFraction,
    kvBlocks: plan.kvBlocks,
    actBlocks: plan.actBlocks,
    blockTokens: plan.blockTokens,
    maxBatch: plan.maxBatch,
    generation,
    reason: plan.reason,
    gpuKvBlocks: plan.gpuKvBlocks ?? 0,
    residentLayers: plan.residentLayers,
  };
}
