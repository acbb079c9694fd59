// The server's start-up decisions, pure: the ACT fraction, the pool sizes, the GPU count (--gpus
// auto) and the placement (plan file, flags, and the planner's own start plan for a cuda server
// without a plan file). server/runtime.ts gathers the facts (the GPU's product, the free host
// memory) and opens the engine with what these decide.
import type { ModelConfig } from '../model/types.js';
import { cacheBytesPerTokenPerLayer } from '../model/types.js';
import { chooseGpuCount } from './gpu-count.js';
import { hardwareProfile } from './hardware.js';
import { modelProfile, type WeightDtype } from './model-profile.js';
import { planNode, type Plan } from './plan.js';
import type { PlanFile } from './plan-file.js';
import { formatBytes } from './quantity.js';
import { nodeStagePlanner, planPodStages } from './stage-plan.js';
import { cpuStartFraction, engineElementBytes, startPlacement, startPools, type EngineDevice } from './start-plan.js';

/** What the server was started with that its start-up decisions read (server/runtime.ts RuntimeOptions). */
export interface StartOptions {
  device: EngineDevice;
  actFraction: number | 'auto';
  /**
   * Host memory for weights + cache; without it the cache holds maxBatch × the window, capped to
   * what fits in a share of the host's free memory (see choosePools).
   */
  hostMemoryBytes?: number;
  /** Cap on the GPU memory the engine uses (cuda). */
  gpuMemoryBytes?: number;
  /** `--resident-layers` / `--gpu-cache-blocks`; the plan file's values win (startPlacement). */
  residentLayers?: number;
  gpuKvBlocks?: number;
  /** `--mini-batch-tokens`: staged tokens per in-step mini-batch; the plan file's value wins. */
  miniBatchTokens?: number;
  /**
   * `--max-step-tokens`: new tokens one step may compute (the scheduler splits larger steps), so
   * the start plan's workspace holds that many rows instead of --max-batch longest prompts.
   */
  maxStepTokens?: number;
  /** The plan file's content at start: its pool sizes and fraction win. */
  plan?: PlanFile | null;
  /** --max-batch: the most sequences a step may hold. */
  maxBatch: number;
  blockTokens?: number;
  /** Free host memory in bytes, for the default cache sizing (the runtime passes os.freemem(); tests pin it). */
  freeMemoryBytes?: number;
  /** Layer weight format (issue 14); the host-memory split counts its bytes. */
  weightDtype?: WeightDtype;
  /** Pipeline stages (issue 15): one per GPU on cuda, in-process stages on cpu; 'auto': chooseGpus. */
  gpus?: number | 'auto';
  stages?: number;
  worldSize?: number;
}

/** Share of the free host memory the default cache sizing may take (the rest: weights' copies, Node, the OS). */
export const DEFAULT_CACHE_SHARE = 0.5;

/** The workload shape start-up planning assumes: 512 + 128 tokens, shortened to fit the window. */
export function startWorkload(maxTotalTokens: number): { promptTokens: number; genTokens: number } {
  const genTokens = Math.max(1, Math.min(128, Math.floor(maxTotalTokens / 5)));
  return { genTokens, promptTokens: Math.max(1, Math.min(512, maxTotalTokens - genTokens)) };
}

/** Planning's placement for a cuda server started without a plan file, and what it was planned for. */
export interface StartPlan {
  plan?: Plan;
  reason: string;
}

export interface ServerStartInput extends StartOptions {
  model: ModelConfig;
  /** The GPU's product (nvidia.com/gpu.product or the device's name); '' when unknown. */
  product: string;
  /** The window a sequence may fill (prompt + generated). */
  maxTotalTokens: number;
}

/**
 * The plan a single-GPU cuda server starts with when no plan file is given (issue 10: the server
 * uses the tiered plan, not only the operator): planNode for this GPU's product and memory cap, the
 * host memory, the batch cap, the fraction, the weight format and the start workload, with any forced
 * placement. The engine's workspace is laid out for the largest step the server may form: maxBatch
 * sequences of the longest prompt the window allows, or at most maxStepTokens new tokens (and one
 * longest prompt) when the scheduler caps a step's tokens. `plan` is absent (the engine's own defaults
 * apply) on cpu, with a plan file, for a pipeline, for a product without a hardware profile, or when
 * planning fails; `reason` says which.
 */
export function serverStartPlan(i: ServerStartInput): StartPlan {
  if (i.device !== 'cuda' || i.plan) return { reason: i.plan ? 'the plan file places' : 'cpu' };
  if (i.gpus === 'auto') return { reason: '--gpus auto is resolved before the start plan' };
  if ((i.gpus ?? 1) > 1 || (i.stages ?? 1) > 1 || (i.worldSize ?? 1) > 1) return { reason: 'a pipeline: each stage places its own layers' };
  const hardware = hardwareProfile(i.product);
  if (!hardware) return { reason: `no hardware profile for '${i.product || 'this GPU'}': the engine's defaults` };
  const window = Math.min(i.maxTotalTokens, i.model.maxPositions);
  try {
    const plan = planNode({
      model: i.model,
      hardware,
      hostMemoryBytes: i.hostMemoryBytes ?? 64 * 2 ** 30,
      gpuMemoryBytes: i.gpuMemoryBytes,
      actFraction: i.actFraction,
      ...startWorkload(window),
      blockTokens: i.blockTokens ?? 16,
      maxBatchCap: i.maxBatch,
      weightDtype: i.weightDtype,
      residentLayers: i.residentLayers,
      gpuKvBlocks: i.gpuKvBlocks,
      largestStep: {
        sequences: i.maxBatch,
        promptTokens: Math.max(1, window - 1),
        seqTokens: window,
        ...(i.maxStepTokens ? { stepTokens: i.maxStepTokens } : {}),
      },
    });
    return { plan, reason: `planning for ${hardware.product}` };
  } catch (err) {
    return { reason: `planning failed (${(err as Error).message}): the engine's defaults` };
  }
}

/**
 * A cuda server's step cap when neither a flag nor a plan file gives one: 16,384 new tokens (or
 * --max-batch when that is larger). Prefill GEMMs of 16,384 rows already run at the full rate (the
 * H200's 8,192-row GEMM: 758 TFLOP/s), while the workspace a step needs shrinks from --max-batch
 * window-long prompts to these rows: OPT-13B served under --gpu-memory 24GiB kept 29 instead of 21
 * layers resident, 156.1 → 172.6 output tokens/s on the H200 (whole GPU: 1,064.7 → 1,080.5;
 * bench/data/serve-planned-stepcap-opt13b-h200.jsonl); with the fused prompt attention, 31 layers and
 * 181.3 (bench/data/serve-planned-default-24g-opt13b-h200.jsonl).
 */
export const DEFAULT_CUDA_STEP_TOKENS = 16384;

/**
 * New tokens one engine step may compute (the scheduler's cap; 0: none) and where it came from:
 * `--max-step-tokens` (0 turns the cap off), else on cuda the plan file's maxStepTokens (the rows the
 * GPU workspace was planned for: a burst of longer prompts than planned must not make a step the
 * workspace cannot hold), else on cuda DEFAULT_CUDA_STEP_TOKENS (at least --max-batch, so that decode
 * steps stay whole), else none (cpu: no GPU workspace to size). Read at start, before the start plan
 * sizes the workspace for it. Pure.
 */
export function chooseStepTokens(o: Pick<StartOptions, 'maxStepTokens' | 'plan' | 'device' | 'maxBatch'>): {
  maxStepTokens: number;
  source: string;
} {
  if (o.maxStepTokens !== undefined) return { maxStepTokens: o.maxStepTokens, source: '--max-step-tokens' };
  if (o.device !== 'cuda') return { maxStepTokens: 0, source: 'none' };
  if (o.plan?.maxStepTokens) return { maxStepTokens: o.plan.maxStepTokens, source: 'the plan file' };
  return { maxStepTokens: Math.max(DEFAULT_CUDA_STEP_TOKENS, o.maxBatch), source: 'the cuda default' };
}

/** The ACT fraction to start with and why (the start plan's when there is one: serverStartPlan). Pure. */
export function chooseFraction(
  o: Pick<StartOptions, 'actFraction' | 'device' | 'plan' | 'hostMemoryBytes'>,
  cfg: ModelConfig,
  deviceName: string,
  start?: StartPlan,
): { fraction: number; reason: string } {
  if (o.plan) return { fraction: o.plan.actFraction, reason: `from the plan file${o.plan.reason ? `: ${o.plan.reason}` : ''}` };
  if (o.actFraction !== 'auto') return { fraction: o.actFraction, reason: 'set by --act-fraction' };
  if (o.device === 'cpu') {
    const cpu = cpuStartFraction();
    return { fraction: cpu.fraction, reason: `auto: ${cpu.reason}` };
  }
  if (start?.plan) return { fraction: start.plan.actFraction, reason: `auto (${start.reason}): ${start.plan.reason}` };
  const hw = hardwareProfile(deviceName);
  if (!hw) return { fraction: 0, reason: `auto: no hardware profile for '${deviceName}', so 0 (pass --act-fraction or a plan file)` };
  try {
    const plan = planNode({ model: cfg, hardware: hw, hostMemoryBytes: o.hostMemoryBytes ?? 64 * 2 ** 30, actFraction: 'auto' });
    return { fraction: plan.actFraction, reason: `auto (planning for ${hw.product}): ${plan.reason}` };
  } catch (err) {
    return { fraction: 0, reason: `auto: planning failed (${(err as Error).message}), so 0` };
  }
}

/**
 * `--gpus auto` (issue 15): the planner's GPU count (planning/gpu-count.ts) among the visible GPUs,
 * from the same inputs as the start-up fraction (the product's hardware profile, --host-memory or
 * 64 GiB, --gpu-memory, --max-batch, the weight format). Pure; throws Error with a clear message
 * when there is nothing to plan with.
 */
export function chooseGpus(
  o: Pick<StartOptions, 'hostMemoryBytes' | 'gpuMemoryBytes' | 'actFraction' | 'weightDtype' | 'maxBatch' | 'blockTokens' | 'plan'>,
  cfg: ModelConfig,
  product: string,
  visible: number,
  maxTotalTokens: number,
): { gpus: number; reason: string } {
  if (!(visible >= 1)) throw new Error('--gpus auto: no GPU is visible to this process');
  if (visible === 1) return { gpus: 1, reason: 'auto: one GPU visible' };
  const hardware = hardwareProfile(product);
  if (!hardware) throw new Error(`--gpus auto: no hardware profile for '${product || 'this GPU'}' to plan with; pass --gpus N`);
  const actFraction = o.plan ? o.plan.actFraction : o.actFraction;
  const workload = startWorkload(Math.min(maxTotalTokens, cfg.maxPositions));
  const choice = chooseGpuCount({
    visible,
    model: cfg,
    hardware,
    planFor: (stagesPerPod) =>
      planPodStages({
        model: cfg,
        pods: 1,
        stagesPerPod,
        podHostMemoryBytes: o.hostMemoryBytes ?? 64 * 2 ** 30,
        planStage: nodeStagePlanner({
          hardware,
          gpuMemoryBytes: o.gpuMemoryBytes,
          actFraction,
          ...workload,
          blockTokens: o.plan?.blockTokens ?? o.blockTokens ?? 16,
          maxBatchCap: o.maxBatch,
          weightDtype: o.weightDtype,
        }),
      }),
  });
  return { gpus: choice.gpus, reason: `auto (planning for ${hardware.product}): ${choice.reason}` };
}

/** Pool sizes at start: the plan file's, else a split of the host-memory cache budget, else a token budget. */
export function choosePools(
  o: StartOptions & { maxTotalTokens: number },
  cfg: ModelConfig,
  fraction: number,
): { kvBlocks?: number; actBlocks?: number; blockTokens: number; tokenBudget: number; reason: string } {
  const blockTokens = o.plan?.blockTokens ?? o.blockTokens ?? 16;
  const wanted = o.maxBatch * o.maxTotalTokens;
  if (o.plan?.kvBlocks !== undefined && o.plan.actBlocks !== undefined) {
    return {
      kvBlocks: o.plan.kvBlocks,
      actBlocks: o.plan.actBlocks,
      blockTokens,
      tokenBudget: wanted,
      reason: 'pool sizes from the plan file',
    };
  }
  if (o.hostMemoryBytes !== undefined) {
    // The same split the operator's CPU start plan uses (planning/start-plan.ts).
    const { layout, split } = startPools({
      model: cfg,
      device: o.device,
      hostMemoryBytes: o.hostMemoryBytes,
      actFraction: fraction,
      blockTokens,
      seqTokens: Math.min(o.maxTotalTokens, cfg.maxPositions),
      weightDtype: o.weightDtype,
      // --host-memory is the weights and the cache; the process's own memory is not in it.
      runtimeReserve: false,
    });
    return {
      kvBlocks: split.kvBlocks,
      actBlocks: split.actBlocks,
      blockTokens,
      tokenBudget: wanted,
      reason: `host memory ${formatBytes(o.hostMemoryBytes)}: ${formatBytes(layout.cacheBytes)} of cache split at fraction ${fraction}`,
    };
  }
  // Default: each pool holds maxBatch whole windows, unless that does not fit in a share of the
  // free memory; then as many tokens as fit, and at least one whole request, else a clear error.
  const elementBytes = engineElementBytes(o.device);
  const perToken = cacheBytesPerTokenPerLayer(cfg, elementBytes);
  const poolBytesPerToken = (perToken.kv + perToken.act) * cfg.numLayers;
  const weightBytes = modelProfile(cfg, elementBytes).weightBytes;
  const free = o.freeMemoryBytes;
  if (free === undefined) throw new RangeError('the default cache sizing needs the free host memory (freeMemoryBytes)');
  const room = Math.max(0, free * DEFAULT_CACHE_SHARE - (o.device === 'cpu' ? weightBytes : 0));
  const fits = Math.floor(room / poolBytesPerToken / blockTokens) * blockTokens - o.maxBatch * blockTokens;
  const tokenBudget = Math.min(wanted, fits);
  if (tokenBudget < o.maxTotalTokens) {
    throw new RangeError(
      `the default cache for one ${o.maxTotalTokens}-token request needs ${formatBytes(o.maxTotalTokens * poolBytesPerToken)} ` +
        `but only ${formatBytes(room)} of the ${formatBytes(free)} free host memory is left for it; pass --host-memory SIZE, or lower --max-total-tokens`,
    );
  }
  const capped =
    tokenBudget < wanted ? `, capped from ${wanted} to fit ${DEFAULT_CACHE_SHARE * 100}% of the ${formatBytes(free)} free host memory` : '';
  return {
    blockTokens,
    tokenBudget,
    reason: `each pool holds ${tokenBudget} tokens (${formatBytes(tokenBudget * poolBytesPerToken)} of KV + ACT${capped})`,
  };
}

/** The flags and the plan file's placement through startPlacement (planning/start-plan.ts). Pure. */
export function placementOf(
  o: Pick<StartOptions, 'plan' | 'residentLayers' | 'gpuKvBlocks' | 'miniBatchTokens' | 'device'>,
  numLayers: number,
  start?: StartPlan,
) {
  const flags = {
    ...(o.residentLayers !== undefined ? { residentLayers: o.residentLayers } : {}),
    ...(o.gpuKvBlocks !== undefined ? { gpuKvBlocks: o.gpuKvBlocks } : {}),
    ...(o.miniBatchTokens !== undefined ? { miniBatchTokens: o.miniBatchTokens } : {}),
  };
  // A plan file's placement sizes a GPU (its GPU cache blocks are counted in that GPU's memory and that
  // model's block size); the CPU engine takes only the flags for its emulated tier.
  return startPlacement({ numLayers, flags, plan: o.device === 'cuda' ? o.plan : null, planned: start?.plan ?? null });
}

/**
 * What the engine is opened with for placement: resident layers and the GPU cache tier (placementOf;
 * the CPU backend takes the same and emulates the tier), and the --gpu-memory cap (cuda only).
 * Pure; throws RangeError naming a bad flag.
 */
export function chooseTiers(
  o: Pick<StartOptions, 'device' | 'plan' | 'gpuMemoryBytes' | 'residentLayers' | 'gpuKvBlocks' | 'miniBatchTokens'>,
  numLayers = Number.MAX_SAFE_INTEGER,
  start?: StartPlan,
): { gpuKvBlocks?: number; residentLayers?: number; miniBatchTokens?: number; gpuMemoryBytes?: number } {
  const p = placementOf(o, numLayers, start);
  return {
    ...(p.residentLayers !== undefined ? { residentLayers: p.residentLayers } : {}),
    ...(p.gpuKvBlocks !== undefined ? { gpuKvBlocks: p.gpuKvBlocks } : {}),
    ...(p.miniBatchTokens !== undefined ? { miniBatchTokens: p.miniBatchTokens } : {}),
    ...(o.device === 'cuda' && o.gpuMemoryBytes !== undefined ? { gpuMemoryBytes: o.gpuMemoryBytes } : {}),
  };
}
