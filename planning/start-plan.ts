// Start plans: what a pod starts with when no plan file applies (the CPU start plan, a cuda server's
// own placement), the one placement rule over plan file, flags and planner, and the facts both the
// server and the operator need about an engine device. ONE owner for "the CPU engine runs ACT
// fraction 0" and "the CPU engine stores fp32, the CUDA engine fp16", so the operator's CPU plan and
// the server's own sizing (no plan file) can never disagree. Pure.
import type { ModelConfig } from '../model/types.js';
import { hostLayout, podMemoryResources, splitCache } from './allocation.js';
import { modelProfile, type WeightDtype } from './model-profile.js';
import type { Plan } from './plan.js';
import { formatBytes } from './quantity.js';

export type EngineDevice = 'cpu' | 'cuda';

/** Bytes per weight/cache element the engine stores on this device. */
export function engineElementBytes(device: EngineDevice): 2 | 4 {
  return device === 'cpu' ? 4 : 2;
}

/** The server's default batch (`hybridserve serve --max-batch`); CPU start plans cap at it. */
export const DEFAULT_MAX_BATCH = 64;

/**
 * The CPU engine's ACT fraction: nothing streams over PCIe, so ACT saves no transfer time and only
 * adds recomputation. Fixed; never retuned.
 */
export function cpuStartFraction(): { fraction: 0; reason: string } {
  return { fraction: 0, reason: 'CPU engine: no PCIe transfer to hide, so ACT fraction 0 (ACT would only add recomputation)' };
}

export interface StartPoolsInput {
  model: ModelConfig;
  device: EngineDevice;
  hostMemoryBytes: number;
  actFraction: number;
  blockTokens: number;
  /** Tokens one sequence may hold (prompt + generated). */
  seqTokens: number;
  maxBatch?: number;
  /** Layer weight format: the host holds the quantised bytes. */
  weightDtype?: WeightDtype;
  /** Keep back the runtime reserve (a pod's whole memory; default). False: the budget is weights + cache (serve --host-memory). */
  runtimeReserve?: boolean;
}

/** Pool sizes from a host-memory budget: weights and runtime first, the rest split at the fraction. */
export function startPools(i: StartPoolsInput) {
  const mp = modelProfile(i.model, engineElementBytes(i.device), i.weightDtype);
  const layout = hostLayout(mp, i.hostMemoryBytes, i.runtimeReserve ?? true);
  const split = splitCache(mp, layout.cacheBytes, i.actFraction, i.blockTokens, Math.min(i.seqTokens, i.model.maxPositions), i.maxBatch);
  return { profile: mp, layout, split };
}

export interface CpuPlanInput {
  model: ModelConfig;
  hostMemoryBytes: number;
  blockTokens: number;
  promptTokens: number;
  genTokens: number;
  /** Cap on the batch (spec.engine.maxBatch); the server default otherwise. */
  maxBatch?: number;
  /** The group's product name, for the record (CPU groups: 'cpu'). */
  gpuProduct: string;
  /** Layer weight format (spec.engine.weightDtype): the pool holds its bytes. Default fp16. */
  weightDtype?: WeightDtype;
}

/** The whole plan of a CPU-engine pod: fraction 0, fp32 pools from the host budget, retune range [0, 0]. */
export function cpuStartPlan(i: CpuPlanInput): Plan {
  const { fraction } = cpuStartFraction();
  const maxBatch = Math.min(DEFAULT_MAX_BATCH, i.maxBatch ?? DEFAULT_MAX_BATCH);
  const {
    profile: mp,
    layout,
    split,
  } = startPools({
    model: i.model,
    device: 'cpu',
    hostMemoryBytes: i.hostMemoryBytes,
    actFraction: fraction,
    blockTokens: i.blockTokens,
    seqTokens: i.promptTokens + i.genTokens,
    maxBatch,
    weightDtype: i.weightDtype,
  });
  const res = podMemoryResources(i.hostMemoryBytes);
  const format = mp.weightDtype === 'fp16' ? '' : `; ${mp.weightDtype} weights (${formatBytes(layout.weightBytes)})`;
  const reason = `${cpuStartFraction().reason}; ${formatBytes(i.hostMemoryBytes)} host memory, batch up to ${split.maxBatch}${format}`;
  return {
    actFraction: fraction,
    hostMemoryBytes: i.hostMemoryBytes,
    kvBlocks: split.kvBlocks,
    actBlocks: split.actBlocks,
    blockTokens: i.blockTokens,
    maxBatch: split.maxBatch,
    predictedStepSeconds: 0,
    predictedTokensPerSecond: 0,
    reason,
    memoryRequestBytes: res.requestBytes,
    memoryLimitBytes: res.limitBytes,
    weightBytes: layout.weightBytes,
    weightDtype: mp.weightDtype,
    cacheBytes: layout.cacheBytes,
    model: mp.name,
    gpuProduct: i.gpuProduct,
    gpuMemoryBytes: 0,
    gpuUsedBytes: 0,
    runtimeBytes: layout.runtimeBytes,
    kvBlockBytes: split.kvBlockBytes,
    actBlockBytes: split.actBlockBytes,
    residentLayers: mp.numLayers,
    numLayers: mp.numLayers,
    miniBatchTokens: 0,
    miniBatchBytes: 0,
    promptTokens: i.promptTokens,
    genTokens: i.genTokens,
    predictedPrefillSeconds: 0,
    predictedDecodeTokensPerSecond: 0,
    predictedPhases: { transferSeconds: 0, computeSeconds: 0, recomputeSeconds: 0, idleSeconds: 0 },
    bound: 'compute',
    retuneBounds: { min: 0, max: 0 },
    sweep: [],
  };
}

/**
 * Where the engine keeps weights and cache: resident layers and blocks of the GPU cache tier; and
 * the in-step mini-batch size the GPU workspace was planned for (engine-workspace.ts).
 */
export interface Placement {
  residentLayers?: number;
  gpuKvBlocks?: number;
  miniBatchTokens?: number;
}

export interface PlacementInput {
  /** Layers in the model (a resident count above it is refused). */
  numLayers: number;
  /** From the command line (`--resident-layers`, `--gpu-cache-blocks`, `--mini-batch-tokens`). */
  flags?: Placement;
  /** From the plan file (plan.json's residentLayers, gpuKvBlocks, miniBatchTokens). */
  plan?: Placement | null;
  /** From planning at start (a cuda server without a plan file: serverStartPlan below); below the flags. */
  planned?: Placement | null;
}

/**
 * The placement an engine starts with. ONE owner for flags, plan file and start-up planning: each
 * field comes from the plan file when it carries it (as the plan's ACT fraction and pool sizes win
 * over the flags: the operator plans the node as a whole), else from the flag, else from the
 * planner's start plan (a cuda server without a plan file), else it is left to the engine (cuda: as
 * many layers as fit, no GPU cache tier; the CPU backend keeps every layer in memory and emulates
 * the tier). Both devices take the same input. Throws RangeError naming the flag for a bad flag value. Pure.
 */
export function startPlacement(i: PlacementInput): Placement & { source: string } {
  const flags = i.flags ?? {};
  checkCount(flags.residentLayers, '--resident-layers', i.numLayers);
  checkCount(flags.gpuKvBlocks, '--gpu-cache-blocks', Number.MAX_SAFE_INTEGER);
  checkCount(flags.miniBatchTokens, '--mini-batch-tokens', Number.MAX_SAFE_INTEGER);
  const plan = i.plan ?? {};
  const planned = i.planned ?? {};
  const pick = (key: keyof Placement): [number | undefined, string] => {
    const fromPlan = wholeCount(plan[key]);
    if (fromPlan !== undefined) return [fromPlan, 'plan file'];
    if (flags[key] !== undefined) return [flags[key], 'flag'];
    const fromPlanner = wholeCount(planned[key]);
    return fromPlanner !== undefined ? [fromPlanner, 'planner'] : [undefined, 'engine default'];
  };
  const [residentLayers, rSource] = pick('residentLayers');
  const [gpuKvBlocks, gSource] = pick('gpuKvBlocks');
  const [miniBatchTokens, mSource] = pick('miniBatchTokens');
  return {
    ...(residentLayers !== undefined ? { residentLayers } : {}),
    ...(gpuKvBlocks !== undefined ? { gpuKvBlocks } : {}),
    ...(miniBatchTokens !== undefined ? { miniBatchTokens } : {}),
    source: `resident layers: ${rSource}; GPU cache blocks: ${gSource}; mini-batch tokens: ${mSource}`,
  };
}

function wholeCount(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : undefined;
}

function checkCount(v: number | undefined, flag: string, max: number): void {
  if (v === undefined) return;
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`${flag} must be an integer between 0 and ${max}, got ${v}`);
}
