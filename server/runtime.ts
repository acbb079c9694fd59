// Model + engine + tokenizer for the server: loads the model spec (model/load.ts), decides the
// ACT fraction and the pool sizes, opens the native engine, and adapts the tokenizer.
import { cacheBytesPerTokenPerLayer, type ModelConfig } from '../model/types.js';
import { loadModel, openEngine, type LoadedModel } from '../model/load.js';
import type { Tokenizer } from '../model/tokenizer.js';
import type { NativeDevice, NativeEngine } from '../native/ts/addon-types.js';
import { hardwareProfile, modelProfile, planNode, splitCache, type WeightDtype } from '../planning/index.js';
import type { PlanFile } from './plan-file.js';
import { planningMiniBatcher } from './scheduler/minibatch.js';
import type { MiniBatcher } from './scheduler/policy.js';
import type { ServerTokenizer } from './request.js';

export interface RuntimeOptions {
  model: string;
  device: NativeDevice;
  actFraction: number | 'auto';
  /** Host memory for weights + cache; without it the cache is sized for maxBatch × maxTotalTokens. */
  hostMemoryBytes?: number;
  /** The plan file's content at start: its pool sizes and fraction win. */
  plan?: PlanFile | null;
  maxBatch: number;
  maxTotalTokens: number;
  blockTokens?: number;
  threads?: number;
  /** Layer weight format (issue 14); the host-memory split counts its bytes. */
  weightDtype?: WeightDtype;
}

export interface Runtime {
  model: LoadedModel;
  engine: NativeEngine;
  tokenizer: ServerTokenizer;
  /** Why this ACT fraction (logged at start). */
  fractionReason: string;
  /** How the pools were sized (logged at start). */
  poolsReason: string;
  /** On CUDA with a known GPU budget: planning's mini-batch split, bounding each step's working set. */
  miniBatcher?: MiniBatcher;
}

/** Tokenizer kinds whose decoding is a plain concatenation of per-token text. */
const CONCATENATIVE = new Set(['gpt2', 'bytes']);

export function adaptTokenizer(t: Tokenizer, cfg: ModelConfig): ServerTokenizer {
  // Decoding one token costs tens of µs in js-tiktoken; streaming decodes every generated token,
  // so per-token text is cached (at most one entry per vocabulary id).
  const cache = new Map<number, string>();
  const decodeToken = (id: number) => {
    let s = cache.get(id);
    if (s === undefined) { s = t.decode([id]); cache.set(id, s); }
    return s;
  };
  return {
    eosTokenId: t.eosTokenId,
    vocabSize: cfg.vocabSize,
    encode: (text) => t.encode(text),
    decode: (ids) => t.decode(ids),
    ...(CONCATENATIVE.has(t.kind) ? { decodeToken } : {}),
    encodeChat: (messages) => t.encodeChat(messages),
  };
}

/** The ACT fraction to start with and why. Pure. */
export function chooseFraction(o: Pick<RuntimeOptions, 'actFraction' | 'device' | 'plan' | 'hostMemoryBytes'>, cfg: ModelConfig, deviceName: string): { fraction: number; reason: string } {
  if (o.plan) return { fraction: o.plan.actFraction, reason: `from the plan file${o.plan.reason ? `: ${o.plan.reason}` : ''}` };
  if (o.actFraction !== 'auto') return { fraction: o.actFraction, reason: 'set by --act-fraction' };
  if (o.device === 'cpu') {
    // On CPU nothing streams over PCIe, so ACT saves no transfer time and only adds recompute.
    return { fraction: 0, reason: 'auto on CPU: no PCIe transfer to hide, ACT would only add recomputation, so 0' };
  }
  const hw = hardwareProfile(deviceName);
  if (!hw) return { fraction: 0, reason: `auto: no hardware profile for '${deviceName}', so 0 (pass --act-fraction or a plan file)` };
  try {
    const plan = planNode({ model: cfg, hardware: hw, hostMemoryBytes: o.hostMemoryBytes ?? 64 * 2 ** 30, actFraction: 'auto' });
    return { fraction: plan.actFraction, reason: `auto (planning for ${hw.product}): ${plan.reason}` };
  } catch (err) {
    return { fraction: 0, reason: `auto: planning failed (${(err as Error).message}), so 0` };
  }
}

/** Pool sizes at start: the plan file's, else a split of the host-memory cache budget, else a token budget. */
export function choosePools(o: RuntimeOptions, cfg: ModelConfig, fraction: number): { kvBlocks?: number; actBlocks?: number; blockTokens: number; tokenBudget: number; reason: string } {
  const blockTokens = o.plan?.blockTokens ?? o.blockTokens ?? 16;
  const tokenBudget = o.maxBatch * o.maxTotalTokens;
  if (o.plan?.kvBlocks !== undefined && o.plan.actBlocks !== undefined) {
    return { kvBlocks: o.plan.kvBlocks, actBlocks: o.plan.actBlocks, blockTokens, tokenBudget, reason: 'pool sizes from the plan file' };
  }
  if (o.hostMemoryBytes !== undefined) {
    const elementBytes = o.device === 'cpu' ? 4 : 2;
    const mp = modelProfile(cfg, elementBytes, o.weightDtype);
    const cacheBytes = o.hostMemoryBytes - mp.weightBytes;
    if (cacheBytes <= 0) throw new RangeError(`--host-memory ${o.hostMemoryBytes} B does not even hold the weights (${mp.weightBytes} B)`);
    const split = splitCache(mp, cacheBytes, fraction, blockTokens, Math.min(o.maxTotalTokens, cfg.maxPositions));
    return { kvBlocks: split.kvBlocks, actBlocks: split.actBlocks, blockTokens, tokenBudget, reason: `host memory ${o.hostMemoryBytes} B: ${cacheBytes} B of cache split at fraction ${fraction}` };
  }
  const kv = cacheBytesPerTokenPerLayer(cfg, o.device === 'cpu' ? 4 : 2).kv * cfg.numLayers;
  return { blockTokens, tokenBudget, reason: `each pool holds ${tokenBudget} tokens (${o.maxBatch} × ${o.maxTotalTokens}; ${(tokenBudget * kv / 2 ** 20).toFixed(0)} MiB of KV)` };
}

export async function openRuntime(o: RuntimeOptions): Promise<Runtime> {
  const model = await loadModel(o.model);
  // The operator passes the node's nvidia.com/gpu.product label; else the engine's device name is used.
  const product = process.env.HYBRIDSERVE_GPU_PRODUCT ?? '';
  let { fraction, reason } = chooseFraction(o, model.config, product);
  const pools = choosePools(o, model.config, fraction);
  const engine = await openEngine(model, {
    device: o.device, actFraction: fraction, blockTokens: pools.blockTokens, tokenBudget: pools.tokenBudget,
    maxSequences: o.maxBatch, kvBlocks: pools.kvBlocks, actBlocks: pools.actBlocks, threads: o.threads,
    weightDtype: o.weightDtype,
  });
  if (o.device === 'cuda' && o.actFraction === 'auto' && !o.plan && !hardwareProfile(product)) {
    ({ fraction, reason } = chooseFraction(o, model.config, engine.info().deviceName));
    engine.setActFraction(fraction);
  }
  let miniBatcher: MiniBatcher | undefined;
  const hbm = hardwareProfile(product)?.hbmBytes ?? hardwareProfile(engine.info().deviceName)?.hbmBytes;
  if (o.device === 'cuda' && hbm) {
    try { miniBatcher = planningMiniBatcher(engine, model.config, hbm, o.maxTotalTokens); } catch { miniBatcher = undefined; }
  }
  return { model, engine, tokenizer: adaptTokenizer(model.tokenizer, model.config), fractionReason: reason, poolsReason: pools.reason, miniBatcher };
}
