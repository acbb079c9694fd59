// planNode: the whole plan for one node (one GPU per pod): GPU layout, host memory (step 1), the ACT
// fraction (solver or fixed), the KV/ACT pools (step 2) and the predicted performance.
import type { ModelConfig } from '../model/types.js';
import { PlanError } from './errors.js';
import { validateHardware, type HardwareProfile } from './hardware.js';
import { actIsSmaller, modelProfile, type WeightDtype } from './model-profile.js';
import { gpuLayout, predict, type GpuLayout, fmtGiB } from './cost-model.js';
import { hostLayout, podMemoryResources, splitCache, fractionBoundsForPools } from './allocation.js';
import { describeBound, evaluate, gqaReason, solveActFraction, type SolveInput } from './solver.js';

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
}

export interface SweepPoint { actFraction: number; maxBatch: number; predictedStepSeconds: number; predictedTokensPerSecond: number }

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
  miniBatchTokens: number;
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
  if (!(Number.isFinite(gpuMemoryBytes) && gpuMemoryBytes > 0)) throw new PlanError(`GPU memory must be a positive number of bytes, got ${gpuMemoryBytes}`);
  if (gpuMemoryBytes > hw.hbmBytes) {
    throw new PlanError(`GPU memory budget ${fmtGiB(gpuMemoryBytes)} exceeds the ${fmtGiB(hw.hbmBytes)} of ${hw.product}`);
  }
  const fixed = input.actFraction;
  if (fixed !== 'auto' && !(typeof fixed === 'number' && fixed >= 0 && fixed <= 1)) {
    throw new PlanError(`ACT fraction must be 'auto' or a number in [0, 1], got ${String(fixed)}`);
  }

  const layout: GpuLayout = gpuLayout(mp, gpuMemoryBytes, seqTokens);
  const host = hostLayout(mp, input.hostMemoryBytes);
  const workload = { promptTokens, genTokens };
  const solveInput: SolveInput = { mp, hw, layout, cacheBytes: host.cacheBytes, workload, maxBatchCap };

  let actFraction: number;
  let reason: string;
  if (fixed === 'auto') {
    const sol = solveActFraction(solveInput);
    if (!sol) throw tooSmall(mp.name, host.cacheBytes, seqTokens);
    actFraction = sol.actFraction;
    reason = sol.reason;
  } else {
    actFraction = fixed;
    const c = evaluate(solveInput, fixed);
    if (!c) throw tooSmall(mp.name, host.cacheBytes, seqTokens);
    // Say what bounds the step at this fraction and what the solver would have chosen instead.
    const auto = solveActFraction(solveInput);
    const alt = !auto ? '' : auto.actFraction === fixed ? '; the solver agrees'
      : `; the solver would choose ${auto.actFraction} (${auto.best.prediction.tokensPerSecond.toFixed(1)} tokens/s)`;
    const gqa = actIsSmaller(mp) ? '' : `; ${gqaReason(mp).replace(/, fraction 0$/, '')}`;
    reason = `fixed: fraction ${fixed} as requested; ${describeBound(c)}${gqa}${alt}`;
  }

  const split = splitCache(mp, host.cacheBytes, actFraction, blockTokens, seqTokens, maxBatchCap);
  if (split.maxBatch < 1) throw tooSmall(mp.name, host.cacheBytes, seqTokens);
  const pred = predict(mp, hw, layout, actFraction, split.maxBatch, workload);
  const res = podMemoryResources(input.hostMemoryBytes);

  const sweep: SweepPoint[] = [];
  for (let i = 0; i <= 10; i++) {
    const a = i / 10;
    const s = splitCache(mp, host.cacheBytes, a, blockTokens, seqTokens, maxBatchCap);
    if (s.maxBatch < 1) continue;
    const p = predict(mp, hw, layout, a, s.maxBatch, workload);
    sweep.push({ actFraction: a, maxBatch: s.maxBatch, predictedStepSeconds: p.stepSeconds, predictedTokensPerSecond: p.tokensPerSecond });
  }

  return {
    actFraction,
    hostMemoryBytes: input.hostMemoryBytes,
    kvBlocks: split.kvBlocks,
    actBlocks: split.actBlocks,
    blockTokens,
    maxBatch: split.maxBatch,
    predictedStepSeconds: pred.stepSeconds,
    predictedTokensPerSecond: pred.tokensPerSecond,
    reason: mp.weightDtype === 'fp16' ? reason : `${reason}; ${mp.weightDtype} weights (${fmtGiB(host.weightBytes)}, ${mp.weightElementBytes.toFixed(2)} bytes per layer weight)`,
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
    miniBatchTokens: layout.miniBatchTokens,
    miniBatchBytes: Math.floor(layout.cacheBufferBytes / 2),
    promptTokens,
    genTokens,
    predictedPrefillSeconds: pred.prefillSeconds,
    predictedDecodeTokensPerSecond: pred.decodeTokensPerSecond,
    predictedPhases: {
      transferSeconds: pred.step.transferSeconds, computeSeconds: pred.step.computeSeconds,
      recomputeSeconds: pred.step.recomputeSeconds, idleSeconds: pred.step.idleSeconds,
    },
    bound: pred.step.bound,
    retuneBounds: actIsSmaller(mp)
      ? fractionBoundsForPools(split.kvBlocks, split.actBlocks, split.maxBatch, seqTokens, blockTokens)
      : { min: 0, max: 0 },
    sweep,
  };
}

function tooSmall(model: string, cacheBytes: number, seqTokens: number): PlanError {
  return new PlanError(`host cache budget ${fmtGiB(cacheBytes)} cannot hold one sequence of ${seqTokens} tokens of ${model}; ` +
    'raise the host memory or shorten prompt/generation');
}

/** The plan file the operator writes (ConfigMap key plan.json) and the server reads. */
export function planFile(plan: Plan, generation: number): {
  actFraction: number; kvBlocks: number; actBlocks: number; blockTokens: number; maxBatch: number; generation: number; reason: string;
} {
  return {
    actFraction: plan.actFraction, kvBlocks: plan.kvBlocks, actBlocks: plan.actBlocks, blockTokens: plan.blockTokens,
    maxBatch: plan.maxBatch, generation, reason: plan.reason,
  };
}
