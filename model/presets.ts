// Named architectures for `synthetic:<preset>` model specs. Dimensions follow the published
// configs (OPT: FlexGen's opt_config.py / HF facebook/opt-*; Llama: HF configs). The *-tiny
// presets are small enough for CPU tests and the embedded default.
import type { ModelConfig } from './types.js';

type PresetDims = Omit<ModelConfig, 'name' | 'headDim' | 'bosTokenId' | 'eosTokenId' | 'tieEmbeddings' | 'normEps' | 'ropeTheta'> &
  Partial<Pick<ModelConfig, 'headDim' | 'normEps' | 'ropeTheta' | 'tieEmbeddings'>>;

function opt(hiddenSize: number, numLayers: number, numHeads: number): PresetDims {
  return {
    arch: 'opt',
    vocabSize: 50272,
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads: numHeads,
    ffnSize: 4 * hiddenSize,
    maxPositions: 2048,
    normEps: 1e-5,
    tieEmbeddings: true,
  };
}

function llama(
  hiddenSize: number,
  numLayers: number,
  numHeads: number,
  numKvHeads: number,
  ffnSize: number,
  vocabSize: number,
  maxPositions: number,
  ropeTheta: number,
): PresetDims {
  return {
    arch: 'llama',
    vocabSize,
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads,
    ffnSize,
    maxPositions,
    normEps: 1e-5,
    ropeTheta,
    tieEmbeddings: false,
  };
}

const DIMS: Record<string, PresetDims> = {
  'opt-tiny': opt(64, 2, 4),
  'opt-125m': opt(768, 12, 12),
  'opt-1.3b': opt(2048, 24, 32),
  'opt-6.7b': opt(4096, 32, 32),
  'opt-13b': opt(5120, 40, 40),
  'opt-30b': opt(7168, 48, 56),
  'opt-66b': opt(9216, 64, 72),
  'llama-tiny': llama(64, 2, 4, 4, 176, 32000, 2048, 10000),
  'llama-tiny-gqa': llama(64, 2, 4, 2, 176, 32000, 2048, 10000),
  'llama-7b': llama(4096, 32, 32, 32, 11008, 32000, 4096, 10000),
  'llama3-8b': llama(4096, 32, 32, 8, 14336, 128256, 8192, 500000),
};

export const PRESET_NAMES: readonly string[] = Object.keys(DIMS);

export function presetConfig(name: string): ModelConfig | undefined {
  const d = DIMS[name];
  if (!d) return undefined;
  const isOpt = d.arch === 'opt';
  return {
    name,
    headDim: d.headDim ?? d.hiddenSize / d.numHeads,
    normEps: d.normEps ?? 1e-5,
    ropeTheta: d.ropeTheta ?? 10000,
    tieEmbeddings: d.tieEmbeddings ?? isOpt,
    // OPT: <s>=2 is both BOS and EOS in the HF configs; Llama: <s>=1, </s>=2.
    bosTokenId: isOpt ? 2 : 1,
    eosTokenId: 2,
    ...d,
  } as ModelConfig;
}
