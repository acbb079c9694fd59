// Model + engine + tokenizer for the server: loads the model spec (model/load.ts), decides the
// ACT fraction and the pool sizes, opens the native engine, and adapts the tokenizer.
import { freemem } from 'node:os';
import { cacheBytesPerTokenPerLayer, type ModelConfig } from '../model/types.js';
import { formatBytes } from '../planning/quantity.js';
import { loadModel, openEngine, type LoadedModel } from '../model/load.js';
import type { Tokenizer } from '../model/tokenizer.js';
import type { NativeDevice, NativeEngine } from '../native/ts/addon-types.js';
import { createEngine, toNativeConfig, visibleGpuCount } from '../native/ts/engine.js';
import { presetConfig } from '../model/presets.js';
import { chooseGpuCount, hardwareProfile, modelProfile, planNode, type WeightDtype } from '../planning/index.js';
import { nodeStagePlanner, planPodStages } from '../planning/stage-plan.js';
import {
  cpuStartFraction,
  engineElementBytes,
  serverStartPlan,
  startPlacement,
  startPools,
  startWorkload,
  type StartPlan,
} from '../planning/start-plan.js';
import type { PlanFile } from '../planning/plan-file.js';
import { planningMiniBatcher } from './scheduler/minibatch.js';
import type { MiniBatcher } from './scheduler/policy.js';
import type { ChatTurn, ServerTokenizer } from './request.js';
import { startTokenizerThread, type TokenizerThread } from './tokenizer-thread.js';

export interface RuntimeOptions {
  model: string;
  device: NativeDevice;
  actFraction: number | 'auto';
  /**
   * Host memory for weights + cache; without it the cache holds maxBatch × the window, capped to
   * what fits in half the host's free memory (see choosePools).
   */
  hostMemoryBytes?: number;
  /** Cap on the GPU memory the engine uses (cuda). */
  gpuMemoryBytes?: number;
  /** `--resident-layers` / `--gpu-cache-blocks`; the plan file's values win (planning/start-plan.ts startPlacement). */
  residentLayers?: number;
  gpuKvBlocks?: number;
  /** `--mini-batch-tokens`: staged tokens per in-step mini-batch; the plan file's value wins. */
  miniBatchTokens?: number;
  /** The plan file's content at start: its pool sizes and fraction win. */
  plan?: PlanFile | null;
  maxBatch: number;
  /** Prompt + generated tokens per request; default (and at most) the model's window, maxPositions. */
  maxTotalTokens?: number;
  blockTokens?: number;
  threads?: number;
  /** Called at each loading stage (the CLI draws a progress bar). */
  onProgress?: (p: LoadProgress) => void;
  /** Free host memory in bytes (default os.freemem()); a parameter so tests can pin it. */
  freeMemoryBytes?: number;
  /** Layer weight format (issue 14); the host-memory split counts its bytes. */
  weightDtype?: WeightDtype;
  /** Reuse the cache of prompt blocks shared with earlier requests (default true). */
  prefixCaching?: boolean;
  /** Pipeline stages (issue 15): one per GPU on cuda, in-process stages on cpu (default 1); 'auto': chooseGpus. */
  gpus?: number | 'auto';
  /** GPUs this process sees, for gpus 'auto' (default: the addon's count); a parameter so tests can pin it. */
  visibleGpus?: number;
  stages?: number;
  /** Rank 0 of stages in several processes: the engine waits for the other ranks to join. */
  rank?: number;
  worldSize?: number;
  leaderAddress?: string;
  pipelineToken?: string;
}

export interface LoadProgress {
  step: number;
  steps: number;
  stage: string;
}

/** Share of the free host memory the default cache sizing may take (the rest: weights' copies, Node, the OS). */
export const DEFAULT_CACHE_SHARE = 0.5;

export interface Runtime {
  model: LoadedModel;
  engine: NativeEngine;
  tokenizer: ServerTokenizer;
  /** Why this ACT fraction (logged at start). */
  fractionReason: string;
  /** How the pools were sized (logged at start). */
  poolsReason: string;
  /** Resident layers and GPU cache blocks asked of the engine, and where each came from (logged at start). */
  placementReason: string;
  /** On CUDA with a known GPU budget: planning's mini-batch split, bounding each step's working set. */
  miniBatcher?: MiniBatcher;
  /** With --gpus auto: the GPUs chosen and why (logged at start). */
  gpusReason?: string;
}

/** Tokenizer kinds whose decoding is a plain concatenation of per-token text. */
const CONCATENATIVE = new Set(['gpt2', 'bytes']);

export function adaptTokenizer(t: Tokenizer, cfg: ModelConfig, thread?: TokenizerThread): ServerTokenizer {
  // Decoding one token costs tens of µs in js-tiktoken; streaming decodes every generated token,
  // so per-token text is cached (at most one entry per vocabulary id).
  const cache = new Map<number, string>();
  const decodeToken = (id: number) => {
    let s = cache.get(id);
    if (s === undefined) {
      s = t.decode([id]);
      cache.set(id, s);
    }
    return s;
  };
  return {
    eosTokenId: t.eosTokenId,
    vocabSize: cfg.vocabSize,
    encode: (text, options) => t.encode(text, options),
    decode: (ids, options) => t.decode(ids, options),
    ...(CONCATENATIVE.has(t.kind) ? { decodeToken } : {}),
    encodeChat: (messages, options) => t.encodeChat(messages, options),
    ...(thread ? { encodeAsync: (text: string) => thread.encode(text), encodeChatAsync: (m: ChatTurn[]) => thread.encodeChat(m) } : {}),
  };
}

/** The ACT fraction to start with and why (the start plan's when there is one: serverStartPlan). Pure. */
export function chooseFraction(
  o: Pick<RuntimeOptions, 'actFraction' | 'device' | 'plan' | 'hostMemoryBytes'>,
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
  o: Pick<RuntimeOptions, 'hostMemoryBytes' | 'gpuMemoryBytes' | 'actFraction' | 'weightDtype' | 'maxBatch' | 'blockTokens' | 'plan'>,
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
  o: RuntimeOptions & { maxTotalTokens: number },
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
  const free = o.freeMemoryBytes ?? freemem();
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
  o: Pick<RuntimeOptions, 'plan' | 'residentLayers' | 'gpuKvBlocks' | 'miniBatchTokens' | 'device'>,
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
  o: Pick<RuntimeOptions, 'device' | 'plan' | 'gpuMemoryBytes' | 'residentLayers' | 'gpuKvBlocks' | 'miniBatchTokens'>,
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

function describePlacement(
  p: { residentLayers?: number; gpuKvBlocks?: number; miniBatchTokens?: number; source: string },
  device: NativeDevice,
): string {
  const layers = p.residentLayers ?? (device === 'cuda' ? 'as many as fit' : 'all');
  const tier = `GPU cache tier ${p.gpuKvBlocks ?? 0} blocks${device === 'cpu' ? ' (emulated on cpu)' : ''}`;
  const split = p.miniBatchTokens ? `mini-batches of ≤ ${p.miniBatchTokens} staged tokens` : 'one mini-batch per step';
  return `resident layers ${layers}, ${tier}, ${split} (${p.source})`;
}

/**
 * The CUDA device's name, '' if it cannot be had. The addon tells it only through an engine, so a
 * throwaway engine of the tiny preset (a 256 MiB GPU budget) is opened and closed.
 */
export async function cudaDeviceName(): Promise<string> {
  try {
    const e = await createEngine({
      device: 'cuda',
      config: toNativeConfig(presetConfig('opt-tiny')!),
      weights: { kind: 'synthetic', seed: 0 },
      blockTokens: 16,
      kvBlocks: 1,
      actBlocks: 0,
      actFraction: 0,
      gpuMemoryBytes: 256 * 2 ** 20,
    });
    try {
      return e.info().deviceName;
    } finally {
      await e.close();
    }
  } catch {
    return '';
  }
}

export async function openRuntime(opts: RuntimeOptions): Promise<Runtime> {
  const progress = opts.onProgress ?? (() => {});
  progress({ step: 0, steps: 2, stage: `reading ${opts.model}` });
  const model = await loadModel(opts.model);
  const o = { ...opts, maxTotalTokens: Math.min(opts.maxTotalTokens ?? model.config.maxPositions, model.config.maxPositions) };
  // The operator passes the node's nvidia.com/gpu.product label; else the device's own name. It is
  // needed BEFORE the pools are split: split at another fraction than the engine then uses, an
  // ACT fraction finds an empty ACT pool and every block falls back to KV (issue 11: the server
  // ran KV-only where bench:engine's auto ran at fraction 1, about half the tokens/s).
  // A cuda server without a plan file plans its own placement (serverStartPlan) for this product.
  const needName = o.device === 'cuda' && (!o.plan || o.gpus === 'auto') && !process.env.HYBRIDSERVE_GPU_PRODUCT;
  const product = process.env.HYBRIDSERVE_GPU_PRODUCT || (needName ? await cudaDeviceName() : '');
  const auto = o.gpus === 'auto' ? chooseGpus(o, model.config, product, o.visibleGpus ?? visibleGpuCount(), o.maxTotalTokens) : undefined;
  const gpus = auto ? auto.gpus : o.gpus === 'auto' ? undefined : o.gpus;
  const start = serverStartPlan({ ...o, gpus, model: model.config, product });
  const { fraction, reason } = chooseFraction(o, model.config, product, start);
  const pools = choosePools(o, model.config, fraction);
  const tiers = chooseTiers(o, model.config.numLayers, start);
  const weightBytes = modelProfile(model.config, o.device === 'cpu' ? 4 : 2, o.weightDtype).weightBytes;
  progress({ step: 1, steps: 2, stage: `loading ${formatBytes(weightBytes)} of weights into the engine` });
  const engine = await openEngine(model, {
    device: o.device,
    actFraction: fraction,
    blockTokens: pools.blockTokens,
    tokenBudget: pools.tokenBudget,
    maxSequences: o.maxBatch,
    kvBlocks: pools.kvBlocks,
    actBlocks: pools.actBlocks,
    threads: o.threads,
    ...tiers,
    weightDtype: o.weightDtype,
    prefixCaching: o.prefixCaching ?? true,
    ...(gpus !== undefined ? { gpus } : {}),
    ...(o.stages !== undefined ? { stages: o.stages } : {}),
    ...(o.worldSize !== undefined && o.worldSize > 1
      ? { rank: o.rank ?? 0, worldSize: o.worldSize, leaderAddress: o.leaderAddress, pipelineToken: o.pipelineToken }
      : {}),
  });
  let miniBatcher: MiniBatcher | undefined;
  const hbm = hardwareProfile(product)?.hbmBytes ?? hardwareProfile(engine.info().deviceName)?.hbmBytes;
  // With in-step mini-batches (a planned miniBatchTokens) the engine core splits each step itself and
  // streams the weights once; the server's split into separate steps (once per group) is for the rest.
  if (o.device === 'cuda' && hbm && !tiers.miniBatchTokens) {
    try {
      miniBatcher = planningMiniBatcher(engine, model.config, hbm, o.maxTotalTokens);
    } catch {
      miniBatcher = undefined;
    }
  }
  progress({ step: 2, steps: 2, stage: `ready (${formatBytes(engine.info().weightBytes)} of weights)` });
  // The byte tokenizer is linear and cheap; BPE tokenizers get a thread for long prompts.
  const thread = model.tokenizer.kind === 'bytes' ? undefined : startTokenizerThread(o.model);
  return {
    model,
    engine,
    tokenizer: adaptTokenizer(model.tokenizer, model.config, thread),
    fractionReason: reason,
    poolsReason: pools.reason,
    placementReason:
      describePlacement(placementOf(o, model.config.numLayers, start), o.device) +
      (o.device === 'cuda' && !o.plan && !start.plan ? `; not planned: ${start.reason}` : ''),
    miniBatcher,
    ...(auto ? { gpusReason: auto.reason } : {}),
  };
}
