// The thin TypeScript wrapper: package-root discovery, config mapping and option checks.
import { describe, expect, test } from '@jest/globals';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { presetConfig } from '../../model/presets.js';
import { addonPath, engineOptionErrors, packageRoot, toNativeConfig } from '../../native/ts/engine.js';
import type { NativeEngineOptions } from '../../native/ts/engine.js';

const cfg = toNativeConfig(presetConfig('llama-tiny-gqa')!);
const good: NativeEngineOptions = {
  device: 'cpu',
  config: cfg,
  weights: { kind: 'synthetic', seed: 3 },
  blockTokens: 16,
  kvBlocks: 8,
  actBlocks: 8,
  actFraction: 0.5,
};

describe('native/ts/engine', () => {
  test('finds the package root and the addon beside it', () => {
    const root = packageRoot();
    expect(existsSync(path.join(root, 'native', 'CMakeLists.txt'))).toBe(true);
    expect(addonPath()).toBe(path.join(root, 'build', 'hybridserve.node'));
    expect(() => packageRoot('/')).toThrow(/cannot find the hybridserve package root/);
  });

  test('maps ModelConfig onto the addon config without the extra fields', () => {
    expect(cfg).toEqual({
      arch: 'llama',
      vocabSize: 32000,
      hiddenSize: 64,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      headDim: 16,
      ffnSize: 176,
      maxPositions: 2048,
      normEps: 1e-5,
      ropeTheta: 10000,
      tieEmbeddings: false,
    });
  });

  test('accepts good options and names every bad field', () => {
    expect(engineOptionErrors(good)).toEqual([]);
    const errs = engineOptionErrors({
      ...good,
      device: 'gpu' as 'cpu',
      actFraction: 2,
      kvBlocks: -1,
      blockTokens: 1.5,
      config: { ...cfg, numKvHeads: 3 },
      weights: { kind: 'synthetic', seed: -1 },
    });
    expect(errs).toEqual([
      "device must be 'cpu' or 'cuda', got gpu",
      'config.numHeads (4) must be a multiple of config.numKvHeads (3)',
      'blockTokens must be an integer >= 1, got 1.5',
      'kvBlocks must be an integer >= 0, got -1',
      'actFraction must be a number in [0, 1], got 2',
      'weights.seed must be an integer >= 0, got -1',
    ]);
    expect(engineOptionErrors({ ...good, actFraction: Number.NaN })).toHaveLength(1);
  });
});
