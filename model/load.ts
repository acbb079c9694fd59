// Model loading shared by the server and the CLI: a Model SPEC → config, weight source (tensor
// references for the engine, never tensor data), tokenizer; and the engine options for it.
import { readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { readHfConfig } from './config.js';
import { ModelError, describeError } from './errors.js';
import { mapTensors } from './names.js';
import { readCheckpointTensors } from './safetensors.js';
import { parseModelSpec } from './spec.js';
import { loadCheckpointTokenizer, syntheticTokenizer, type Tokenizer } from './tokenizer.js';
import type { ModelConfig } from './types.js';
import type { NativeDevice, NativeEngine, NativeEngineOptions, NativeModelConfig, NativeWeightSource } from '../native/ts/addon-types.js';
import { createEngine, toNativeConfig } from '../native/ts/engine.js';

export interface LoadedModel {
  /** Display name: the preset name or the checkpoint directory's base name. */
  name: string;
  /** The spec as given (trimmed). */
  spec: string;
  source: 'synthetic' | 'checkpoint';
  /** Checkpoint directory (absolute), for checkpoints. */
  dir?: string;
  config: ModelConfig;
  weights: NativeWeightSource;
  tokenizer: Tokenizer;
}

export interface LoadOptions {
  /** Environment for pvc:// resolution (HYBRIDSERVE_MODEL_ROOT); default process.env. */
  env?: Record<string, string | undefined>;
}

export async function loadModel(specText: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const spec = parseModelSpec(specText, opts.env);
  if (spec.kind === 'synthetic') {
    return {
      name: spec.preset,
      spec: spec.spec,
      source: 'synthetic',
      config: spec.config,
      weights: { kind: 'synthetic', seed: spec.seed },
      tokenizer: syntheticTokenizer(spec.config),
    };
  }
  const dir = spec.dir;
  let isDir: boolean;
  try {
    isDir = (await stat(dir)).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ModelError(code === 'ENOENT' ? `model directory ${dir} does not exist` : `cannot read ${dir}: ${describeError(err)}`);
  }
  if (!isDir)
    throw new ModelError(`model spec '${spec.spec}': ${dir} is not a directory (expected a checkpoint directory or synthetic:<preset>)`);
  await assertConfined(dir);
  const config = await readHfConfig(dir);
  const tensors = mapTensors(config, await readCheckpointTensors(dir));
  const tokenizer = await loadCheckpointTokenizer(dir, config);
  return { name: config.name, spec: spec.spec, source: 'checkpoint', dir, config, weights: { kind: 'files', tensors }, tokenizer };
}

/**
 * Refuses a checkpoint directory holding a symbolic link that leads outside it (or nowhere): the
 * loader reads and the engine maps files by name, and a link to /etc/shadow or another tenant's
 * volume must not be read. Messages name the link, never the target's contents.
 */
export async function assertConfined(dir: string): Promise<void> {
  let root: string;
  let entries;
  try {
    root = await realpath(dir);
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw new ModelError(`cannot read ${dir}: ${(err as NodeJS.ErrnoException).code ?? describeError(err)}`);
  }
  for (const e of entries) {
    if (!e.isSymbolicLink()) continue;
    const link = path.join(dir, e.name);
    let target: string;
    try {
      target = await realpath(link);
    } catch {
      throw new ModelError(`${link} is a symbolic link that leads nowhere`);
    }
    if (target !== root && !target.startsWith(root + path.sep)) {
      throw new ModelError(
        `${link} is a symbolic link that leads outside the model directory ${dir}; copy the file into the directory instead`,
      );
    }
  }
}

export function nativeModelConfig(cfg: ModelConfig): NativeModelConfig {
  return toNativeConfig(cfg);
}

export interface EngineSizing {
  device?: NativeDevice;
  /** Default ACT fraction in [0, 1] (default 0). */
  actFraction?: number;
  /** Tokens per cache block (default 16). */
  blockTokens?: number;
  /** Tokens of cache to provide for, over all sequences at once. */
  tokenBudget: number;
  /** Sequences alive at once (each may leave one block partly filled); default 1. */
  maxSequences?: number;
  /** Explicit pool sizes (e.g. from a plan) override the budget. */
  kvBlocks?: number;
  actBlocks?: number;
  threads?: number;
  gpuMemoryBytes?: number;
  residentLayers?: number;
  /** Reuse the cache of full blocks shared with earlier prompts (engine option prefixCaching). */
  prefixCaching?: boolean;
  /** Blocks of the GPU cache tier (engine option gpuKvBlocks). */
  gpuKvBlocks?: number;
  /** Staged tokens per in-step mini-batch (engine option miniBatchTokens; the plan's, which sized the GPU workspace for it). */
  miniBatchTokens?: number;
  /** Storage of the layers' GEMM weights (default fp16: the engine's native dtype). */
  weightDtype?: NativeEngineOptions['weightDtype'];
  /** Pipeline stages (issue 15): engine options gpus (cuda) and stages (cpu). */
  gpus?: number;
  stages?: number;
  /** Stages in several processes (engine options rank, worldSize, leaderAddress, pipelineToken). */
  rank?: number;
  worldSize?: number;
  leaderAddress?: string;
  pipelineToken?: string;
}

/**
 * Pool sizes for a token budget. Each pool can hold the whole budget on its own, so any ACT
 * fraction (also per-sequence overrides) fits; a planner that sizes the pools exactly passes
 * kvBlocks/actBlocks instead.
 */
export function poolSizesForBudget(
  tokenBudget: number,
  blockTokens: number,
  maxSequences: number,
): { kvBlocks: number; actBlocks: number } {
  if (!(tokenBudget > 0) || !(blockTokens > 0) || !(maxSequences > 0)) {
    throw new RangeError(
      `pool sizing needs positive numbers (tokenBudget ${tokenBudget}, blockTokens ${blockTokens}, maxSequences ${maxSequences})`,
    );
  }
  const blocks = Math.ceil(tokenBudget / blockTokens) + maxSequences;
  return { kvBlocks: blocks, actBlocks: blocks };
}

export function engineOptions(model: Pick<LoadedModel, 'config' | 'weights'>, sizing: EngineSizing): NativeEngineOptions {
  const blockTokens = sizing.blockTokens ?? 16;
  const actFraction = sizing.actFraction ?? 0;
  if (!(actFraction >= 0 && actFraction <= 1)) throw new RangeError(`ACT fraction must be in [0, 1], got ${actFraction}`);
  const pools =
    sizing.kvBlocks !== undefined && sizing.actBlocks !== undefined
      ? { kvBlocks: sizing.kvBlocks, actBlocks: sizing.actBlocks }
      : poolSizesForBudget(sizing.tokenBudget, blockTokens, sizing.maxSequences ?? 1);
  return {
    device: sizing.device ?? 'cpu',
    config: nativeModelConfig(model.config),
    weights: model.weights,
    blockTokens,
    ...pools,
    actFraction,
    ...(sizing.threads !== undefined ? { threads: sizing.threads } : {}),
    ...(sizing.gpuMemoryBytes !== undefined ? { gpuMemoryBytes: sizing.gpuMemoryBytes } : {}),
    ...(sizing.residentLayers !== undefined ? { residentLayers: sizing.residentLayers } : {}),
    ...(sizing.gpuKvBlocks !== undefined ? { gpuKvBlocks: sizing.gpuKvBlocks } : {}),
    ...(sizing.miniBatchTokens !== undefined ? { miniBatchTokens: sizing.miniBatchTokens } : {}),
    ...(sizing.prefixCaching !== undefined ? { prefixCaching: sizing.prefixCaching } : {}),
    ...(sizing.weightDtype !== undefined && sizing.weightDtype !== 'fp16' ? { weightDtype: sizing.weightDtype } : {}),
    ...(sizing.gpus !== undefined && sizing.gpus > 1 ? { gpus: sizing.gpus } : {}),
    ...(sizing.stages !== undefined && sizing.stages > 1 ? { stages: sizing.stages } : {}),
    ...(sizing.worldSize !== undefined && sizing.worldSize > 1
      ? {
          rank: sizing.rank ?? 0,
          worldSize: sizing.worldSize,
          leaderAddress: sizing.leaderAddress,
          ...(sizing.pipelineToken ? { pipelineToken: sizing.pipelineToken } : {}),
        }
      : {}),
  };
}

/**
 * Builds the engine for a loaded model. Errors from the engine while loading checkpoint weights
 * (which the headers did not reveal) become ModelError; the addon is loaded only here.
 */
export async function openEngine(model: Pick<LoadedModel, 'config' | 'weights'>, sizing: EngineSizing): Promise<NativeEngine> {
  const options = engineOptions(model, sizing);
  try {
    return await createEngine(options);
  } catch (err) {
    throw new ModelError(`cannot start the engine: ${describeError(err)}`);
  }
}
