// Bytes and FLOPs of a model per layer and per token: everything the cost model needs to know about
// the architecture. OPT: LayerNorm with bias, biased projections, ReLU FFN (fc1, fc2), learned
// positions (+2 offset rows). Llama: RMSNorm, no biases, SwiGLU FFN (gate, up, down), RoPE.
import type { ModelConfig } from '../model/types.js';
import { PlanError } from './errors.js';

/** Storage format of the decoder layers' GEMM weights (issue 14); everything else stays 16-bit. */
export type WeightDtype = 'fp16' | 'fp8' | 'int8' | 'int4';
export const WEIGHT_DTYPES: readonly WeightDtype[] = ['fp16', 'fp8', 'int8', 'int4'];

/** int4 groups: 128 columns share one f32 scale and one u8 zero point (native/src/core/quant.h). */
const INT4_GROUP = 128;

/**
 * Bytes per weight element of a format, scales included: fp8/int8 one code byte (the per-row f32
 * scale adds 4/hidden, under 0.5%, not counted); int4 half a byte + (4 + 1) bytes per 128 columns.
 */
export function weightElementBytes(dtype: WeightDtype, elementBytes = 2): number {
  switch (dtype) {
    case 'fp16':
      return elementBytes;
    case 'fp8':
    case 'int8':
      return 1;
    case 'int4':
      return 0.5 + 5 / INT4_GROUP;
  }
}

/** Parses a --weight-dtype / weightDtype value; throws PlanError naming the accepted ones. */
export function parseWeightDtype(v: unknown, what = 'weight dtype'): WeightDtype {
  if (typeof v === 'string' && (WEIGHT_DTYPES as readonly string[]).includes(v)) return v as WeightDtype;
  throw new PlanError(`${what} must be one of ${WEIGHT_DTYPES.join(', ')}, got '${String(v)}'`);
}

export interface ModelProfile {
  name: string;
  arch: ModelConfig['arch'];
  numLayers: number;
  hiddenSize: number;
  numHeads: number;
  /** numHeads · headDim (the query width). */
  qDim: number;
  /** numKvHeads · headDim (the width of K and of V). */
  kvDim: number;
  vocabSize: number;
  /** The FFN's inner width (OPT fc1's outputs, Llama's gate/up outputs). */
  ffnSize: number;
  /** Bytes of a cache (KV/ACT) and activation element, and of every non-GEMM weight (2: fp16). */
  elementBytes: number;
  /** Format of the layers' GEMM weights and its bytes per element (weightElementBytes). */
  weightDtype: WeightDtype;
  weightElementBytes: number;
  /** Parameters of one decoder layer, and the GEMM part of them (no biases, no norms). */
  layerParams: number;
  layerMatmulParams: number;
  /** One layer's weights: GEMM weights in weightDtype, norms and biases in elementBytes. */
  layerBytes: number;
  /**
   * One layer as the GPU's GEMMs read it, all in elementBytes: the fp16 slot a quantised layer is
   * dequantised into (equal to layerBytes for fp16).
   */
  slotLayerBytes: number;
  /** Embeddings, positions, final norm and (untied) lm_head: kept on the GPU, always 16-bit. */
  headBytes: number;
  weightBytes: number;
  /** Cache entry of one token in one layer: KV = 2·kvDim·elementBytes, ACT = hidden·elementBytes. */
  kvBytesPerToken: number;
  actBytesPerToken: number;
  /** New-token FLOPs of one layer's GEMMs (2 per multiply-add), attention excluded. */
  layerFlopsPerToken: number;
  /** FLOPs to rebuild one token's K and V from its ACT: [1×h]·[h×2·kvDim] → 4·h·kvDim. */
  recomputeFlopsPerToken: number;
  /** Attention FLOPs per (query token, context token) pair in one layer: QKᵀ and AV → 4·qDim. */
  attentionFlopsPerPair: number;
  /** lm_head FLOPs per sampled token: 2·vocab·h. */
  headFlopsPerToken: number;
  /** lm_head bytes read per step (the embedding when tied). */
  lmHeadBytes: number;
  /** numKvHeads < numHeads. */
  groupedQuery: boolean;
}

function positiveInt(v: unknown, what: string, model: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new PlanError(`model '${model}': ${what} must be a positive integer, got ${String(v)}`);
  }
  return v;
}

export function modelProfile(cfg: ModelConfig, elementBytes = 2, weightDtype: WeightDtype = 'fp16'): ModelProfile {
  const name = cfg?.name ?? '?';
  const h = positiveInt(cfg.hiddenSize, 'hiddenSize', name);
  const layers = positiveInt(cfg.numLayers, 'numLayers', name);
  const heads = positiveInt(cfg.numHeads, 'numHeads', name);
  const kvHeads = positiveInt(cfg.numKvHeads, 'numKvHeads', name);
  const headDim = positiveInt(cfg.headDim, 'headDim', name);
  const ffn = positiveInt(cfg.ffnSize, 'ffnSize', name);
  const vocab = positiveInt(cfg.vocabSize, 'vocabSize', name);
  if (kvHeads > heads || heads % kvHeads !== 0) {
    throw new PlanError(`model '${name}': numKvHeads (${kvHeads}) must divide numHeads (${heads})`);
  }
  if (!(elementBytes > 0 && Number.isFinite(elementBytes))) {
    throw new PlanError(`elementBytes must be a positive number, got ${elementBytes}`);
  }
  const wBytes = weightElementBytes(parseWeightDtype(weightDtype), elementBytes);
  const qDim = heads * headDim;
  const kvDim = kvHeads * headDim;
  const isOpt = cfg.arch === 'opt';

  const attnMatmul = h * qDim + 2 * h * kvDim + qDim * h;
  const ffnMatmul = (isOpt ? 2 : 3) * h * ffn;
  const layerMatmulParams = attnMatmul + ffnMatmul;
  // OPT: biases on q, k, v, out, fc1, fc2 and two LayerNorms with weight and bias. Llama: two RMSNorm weights.
  const layerExtra = isOpt ? qDim + 2 * kvDim + h + ffn + h + 2 * 2 * h : 2 * h;
  const layerParams = layerMatmulParams + layerExtra;

  // GEMM weights in the weight format, norms and biases 16-bit; rounded up to whole bytes.
  const layerBytes = (matmul: number, extra: number): number => Math.ceil(matmul * wBytes) + extra * elementBytes;

  const embed = vocab * h;
  const positions = isOpt ? (cfg.maxPositions + 2) * h : 0;
  const finalNorm = isOpt ? 2 * h : h;
  const lmHead = cfg.tieEmbeddings ? 0 : vocab * h;
  const headParams = embed + positions + finalNorm + lmHead;

  return {
    name,
    arch: cfg.arch,
    numLayers: layers,
    hiddenSize: h,
    numHeads: heads,
    qDim,
    kvDim,
    vocabSize: vocab,
    ffnSize: ffn,
    elementBytes,
    weightDtype,
    weightElementBytes: wBytes,
    layerParams,
    layerMatmulParams,
    layerBytes: layerBytes(layerMatmulParams, layerExtra),
    slotLayerBytes: layerParams * elementBytes,
    headBytes: headParams * elementBytes,
    weightBytes: layers * layerBytes(layerMatmulParams, layerExtra) + headParams * elementBytes,
    kvBytesPerToken: 2 * kvDim * elementBytes,
    actBytesPerToken: h * elementBytes,
    layerFlopsPerToken: 2 * layerMatmulParams,
    recomputeFlopsPerToken: 4 * h * kvDim,
    attentionFlopsPerPair: 4 * qDim,
    headFlopsPerToken: 2 * vocab * h,
    lmHeadBytes: vocab * h * elementBytes,
    groupedQuery: kvHeads < heads,
  };
}

/** True when caching a token as ACT saves bytes over KV (false for GQA with numKvHeads ≤ numHeads/2). */
export function actIsSmaller(mp: ModelProfile): boolean {
  return mp.actBytesPerToken < mp.kvBytesPerToken;
}
