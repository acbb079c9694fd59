// The only module that loads the native addon (build/hybridserve.node). Thin: it finds the binary,
// checks options in JS so mistakes fail with clear messages before reaching C++, and maps the
// project's ModelConfig onto the addon's. Everything else is native/ts/addon-types.ts.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { ModelConfig } from '../../model/types.js';
import { NativeErrorCode, type NativeAddon, type NativeEngine, type NativeEngineOptions, type NativeModelConfig } from './addon-types.js';

export type * from './addon-types.js';
export { isNativeError, NativeErrorCode } from './addon-types.js';

/** The package root: the nearest ancestor holding our package.json (works from source and dist/). */
export function packageRoot(start: string = path.dirname(fileURLToPath(import.meta.url))): string {
  let dir = start;
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'hybridserve') return dir;
      } catch {
        // not ours; keep walking up
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the hybridserve package root above ${start}`);
    dir = up;
  }
}

/** Where the addon binary lives (HYBRIDSERVE_ADDON overrides, e.g. for a sanitizer build). */
export function addonPath(): string {
  return process.env.HYBRIDSERVE_ADDON ?? path.join(packageRoot(), 'build', 'hybridserve.node');
}

let cached: NativeAddon | undefined;

export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const file = addonPath();
  if (!existsSync(file)) {
    throw new Error(`native addon not found at ${file}: build it with \`node scripts/build-native.mjs\``);
  }
  const require = createRequire(import.meta.url);
  cached = require(file) as NativeAddon;
  return cached;
}

/** GPUs this process sees (the addon's cudaGetDeviceCount; 0 in a build without CUDA). */
export function visibleGpuCount(): number {
  return loadAddon().gpuCount();
}

/** The addon's view of a model config. */
export function toNativeConfig(cfg: ModelConfig): NativeModelConfig {
  return {
    arch: cfg.arch,
    vocabSize: cfg.vocabSize,
    hiddenSize: cfg.hiddenSize,
    numLayers: cfg.numLayers,
    numHeads: cfg.numHeads,
    numKvHeads: cfg.numKvHeads,
    headDim: cfg.headDim,
    ffnSize: cfg.ffnSize,
    maxPositions: cfg.maxPositions,
    normEps: cfg.normEps,
    ropeTheta: cfg.ropeTheta,
    tieEmbeddings: cfg.tieEmbeddings,
  };
}

/** Problems with engine options, as messages (empty when valid). Pure, so it is unit-tested alone. */
export function engineOptionErrors(opts: NativeEngineOptions): string[] {
  const errs: string[] = [];
  const int = (v: unknown, name: string, min: number): void => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) errs.push(`${name} must be an integer >= ${min}, got ${String(v)}`);
  };
  if (opts.device !== 'cpu' && opts.device !== 'cuda') errs.push(`device must be 'cpu' or 'cuda', got ${String(opts.device)}`);
  const c = opts.config;
  if (!c || typeof c !== 'object') {
    errs.push('config must be an object');
  } else {
    if (c.arch !== 'opt' && c.arch !== 'llama') errs.push(`config.arch must be 'opt' or 'llama', got ${String(c.arch)}`);
    for (const k of ['vocabSize', 'hiddenSize', 'numLayers', 'numHeads', 'numKvHeads', 'headDim', 'ffnSize', 'maxPositions'] as const) {
      int(c[k], `config.${k}`, 1);
    }
    if (Number.isInteger(c.numHeads) && Number.isInteger(c.numKvHeads) && c.numKvHeads > 0 && c.numHeads % c.numKvHeads !== 0) {
      errs.push(`config.numHeads (${c.numHeads}) must be a multiple of config.numKvHeads (${c.numKvHeads})`);
    }
  }
  int(opts.blockTokens, 'blockTokens', 1);
  int(opts.kvBlocks, 'kvBlocks', 0);
  int(opts.actBlocks, 'actBlocks', 0);
  if (opts.gpuKvBlocks !== undefined) int(opts.gpuKvBlocks, 'gpuKvBlocks', 0);
  if (typeof opts.actFraction !== 'number' || !(opts.actFraction >= 0 && opts.actFraction <= 1)) {
    errs.push(`actFraction must be a number in [0, 1], got ${String(opts.actFraction)}`);
  }
  if (opts.threads !== undefined) int(opts.threads, 'threads', 0);
  if (opts.miniBatchTokens !== undefined) int(opts.miniBatchTokens, 'miniBatchTokens', 0);
  if (opts.stages !== undefined) int(opts.stages, 'stages', 1);
  if (opts.gpus !== undefined) int(opts.gpus, 'gpus', 1);
  if (opts.worldSize !== undefined) int(opts.worldSize, 'worldSize', 1);
  if (opts.rank !== undefined) int(opts.rank, 'rank', 0);
  if ((opts.worldSize ?? 1) > 1 && !opts.leaderAddress) errs.push('worldSize > 1 needs leaderAddress');
  const w = opts.weights;
  if (!w || (w.kind !== 'synthetic' && w.kind !== 'files')) errs.push("weights.kind must be 'synthetic' or 'files'");
  else if (w.kind === 'synthetic') int(w.seed, 'weights.seed', 0);
  return errs;
}

/** A rank >= 1 of a pipeline over processes (see NativeAddon.runRank); validates like createEngine. */
export async function runRank(opts: NativeEngineOptions): Promise<void> {
  const errs = engineOptionErrors(opts);
  if (errs.length > 0) {
    throw Object.assign(new RangeError(`invalid engine options: ${errs.join('; ')}`), { code: NativeErrorCode.InvalidArgument });
  }
  return loadAddon().runRank(opts);
}

/** Validates in JS, then builds the engine off the main thread. Rejects with RangeError on bad options. */
export async function createEngine(opts: NativeEngineOptions): Promise<NativeEngine> {
  const errs = engineOptionErrors(opts);
  if (errs.length > 0) {
    throw Object.assign(new RangeError(`invalid engine options: ${errs.join('; ')}`), { code: NativeErrorCode.InvalidArgument });
  }
  return loadAddon().createEngine(opts);
}
