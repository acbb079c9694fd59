// Model + engine + tokenizer for the server: loads the model spec (model/load.ts), gathers what the
// start-up decisions need (the GPU's product, the free host memory), applies those decisions
// (planning/server-start.ts: fraction, pools, GPU count, placement), opens the native engine, and
// adapts the tokenizer.
import { freemem } from 'node:os';
import type { ModelConfig } from '../model/types.js';
import { formatBytes } from '../planning/quantity.js';
import { loadModel, openEngine, type LoadedModel } from '../model/load.js';
import type { Tokenizer } from '../model/tokenizer.js';
import type { NativeDevice, NativeEngine } from '../native/ts/addon-types.js';
import { createEngine, toNativeConfig, visibleGpuCount } from '../native/ts/engine.js';
import { presetConfig } from '../model/presets.js';
import { hardwareProfile, modelProfile } from '../planning/index.js';
import {
  chooseFraction,
  chooseGpus,
  choosePools,
  chooseTiers,
  placementOf,
  serverStartPlan,
  type StartOptions,
} from '../planning/server-start.js';
import { planningMiniBatcher } from './scheduler/minibatch.js';
import type { MiniBatcher } from './scheduler/policy.js';
import type { ChatTurn, ServerTokenizer } from './request.js';
import { startTokenizerThread, type TokenizerThread } from './tokenizer-thread.js';

export interface RuntimeOptions extends StartOptions {
  model: string;
  device: NativeDevice;
  /** Prompt + generated tokens per request; default (and at most) the model's window, maxPositions. */
  maxTotalTokens?: number;
  threads?: number;
  /** Called at each loading stage (the CLI draws a progress bar). */
  onProgress?: (p: LoadProgress) => void;
  /** Reuse the cache of prompt blocks shared with earlier requests (default true). */
  prefixCaching?: boolean;
  /** GPUs this process sees, for gpus 'auto' (default: the addon's count); a parameter so tests can pin it. */
  visibleGpus?: number;
  /** Rank 0 of stages in several processes: the engine waits for the other ranks to join. */
  rank?: number;
  leaderAddress?: string;
  pipelineToken?: string;
}

export interface LoadProgress {
  step: number;
  steps: number;
  stage: string;
}

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
  /** Whether the engine reuses cached prompt blocks (what it was opened with). */
  prefixCaching: boolean;
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

/** What chooseTiers gives the engine: resident layers, GPU cache blocks, mini-batch tokens, the GPU memory cap. */
type Tiers = ReturnType<typeof chooseTiers>;

/**
 * Opens the engine with the planned placement; should that fail and a placement without the start
 * plan be given (`unplanned`: what the flags and plan file alone say), once more with that and says
 * why. The start plan counts on the card's memory (or the cap): on a GPU another process shares, its
 * GPU cache tier may not be there to allocate; the server then starts as it would have without it.
 */
export async function openPlanned<E>(
  open: (tiers: Tiers) => Promise<E>,
  planned: Tiers,
  unplanned: Tiers | undefined,
): Promise<{ engine: E; tiers: Tiers; fellBack?: string }> {
  try {
    return { engine: await open(planned), tiers: planned };
  } catch (err) {
    if (!unplanned) throw err;
    const why = err instanceof Error ? err.message : String(err);
    return { engine: await open(unplanned), tiers: unplanned, fellBack: why };
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
  const pools = choosePools({ ...o, freeMemoryBytes: o.freeMemoryBytes ?? freemem() }, model.config, fraction);
  const planned = chooseTiers(o, model.config.numLayers, start);
  const prefixCaching = o.prefixCaching ?? true;
  const weightBytes = modelProfile(model.config, o.device === 'cpu' ? 4 : 2, o.weightDtype).weightBytes;
  progress({ step: 1, steps: 2, stage: `loading ${formatBytes(weightBytes)} of weights into the engine` });
  const open = (tiers: Tiers) =>
    openEngine(model, {
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
      prefixCaching,
      ...(gpus !== undefined ? { gpus } : {}),
      ...(o.stages !== undefined ? { stages: o.stages } : {}),
      ...(o.worldSize !== undefined && o.worldSize > 1
        ? { rank: o.rank ?? 0, worldSize: o.worldSize, leaderAddress: o.leaderAddress, pipelineToken: o.pipelineToken }
        : {}),
    });
  const opened = await openPlanned(open, planned, start.plan ? chooseTiers(o, model.config.numLayers) : undefined);
  const { engine, tiers } = opened;
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
      describePlacement(placementOf(o, model.config.numLayers, opened.fellBack ? undefined : start), o.device) +
      (o.device === 'cuda' && !o.plan && !start.plan ? `; not planned: ${start.reason}` : '') +
      (opened.fellBack ? `; the start plan's placement did not open (${opened.fellBack}), so without it` : ''),
    miniBatcher,
    ...(auto ? { gpusReason: auto.reason } : {}),
    prefixCaching,
  };
}
