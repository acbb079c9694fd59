// Checkpoint tensor names → the engine's canonical names (native/src/core/weights.cc), with the
// shapes the config implies. Pure. Unknown checkpoint tensors are ignored; a missing one, or one
// of the wrong shape, is a ModelError naming both the checkpoint name and the expected shape.
import { ModelError } from './errors.js';
import type { SafetensorsTensor } from './safetensors.js';
import type { ModelConfig } from './types.js';
import type { NativeTensorRef } from '../native/ts/addon-types.js';

export interface CanonicalTensor {
  /** The engine's name. */
  name: string;
  shape: number[];
  /** Checkpoint names that may hold it, in order of preference. */
  sources: string[];
  optional?: boolean;
}

const OPT_PREFIXES = ['model.decoder.', 'decoder.'];
const OPT_LAYER: Array<[string, string]> = [
  ['attn_norm', 'self_attn_layer_norm'],
  ['q_proj', 'self_attn.q_proj'],
  ['k_proj', 'self_attn.k_proj'],
  ['v_proj', 'self_attn.v_proj'],
  ['o_proj', 'self_attn.out_proj'],
  ['ffn_norm', 'final_layer_norm'],
  ['fc1', 'fc1'],
  ['fc2', 'fc2'],
];
const LLAMA_LAYER: Array<[string, string]> = [
  ['attn_norm', 'input_layernorm'],
  ['q_proj', 'self_attn.q_proj'],
  ['k_proj', 'self_attn.k_proj'],
  ['v_proj', 'self_attn.v_proj'],
  ['o_proj', 'self_attn.o_proj'],
  ['ffn_norm', 'post_attention_layernorm'],
  ['gate_proj', 'mlp.gate_proj'],
  ['up_proj', 'mlp.up_proj'],
  ['down_proj', 'mlp.down_proj'],
];

/** Every tensor the engine needs for this config, with its canonical name, shape and HF names. */
export function canonicalTensors(cfg: ModelConfig): CanonicalTensor[] {
  const h = cfg.hiddenSize;
  const q = cfg.numHeads * cfg.headDim;
  const kv = cfg.numKvHeads * cfg.headDim;
  const f = cfg.ffnSize;
  const opt = cfg.arch === 'opt';
  const prefixes = opt ? OPT_PREFIXES : ['model.', ''];
  const hf = (leaf: string) => prefixes.map((p) => p + leaf);
  const out: CanonicalTensor[] = [];
  const add = (name: string, shape: number[], sources: string[], optional = false) =>
    out.push({ name, shape, sources, ...(optional ? { optional } : {}) });

  add('embed_tokens.weight', [cfg.vocabSize, h], hf('embed_tokens.weight'));
  if (opt) add('embed_positions.weight', [cfg.maxPositions + 2, h], hf('embed_positions.weight'));
  add('final_norm.weight', [h], hf(opt ? 'final_layer_norm.weight' : 'norm.weight'));
  if (opt) add('final_norm.bias', [h], hf('final_layer_norm.bias'));
  // A tied lm_head is the embedding; the engine then takes no lm_head tensor.
  if (!cfg.tieEmbeddings) add('lm_head.weight', [cfg.vocabSize, h], ['lm_head.weight', 'model.lm_head.weight']);

  const shapes: Record<string, number[]> = {
    attn_norm: [h],
    ffn_norm: [h],
    q_proj: [q, h],
    k_proj: [kv, h],
    v_proj: [kv, h],
    o_proj: [h, q],
    fc1: [f, h],
    fc2: [h, f],
    gate_proj: [f, h],
    up_proj: [f, h],
    down_proj: [h, f],
  };
  const biases: Record<string, number[]> = {
    attn_norm: [h],
    ffn_norm: [h],
    q_proj: [q],
    k_proj: [kv],
    v_proj: [kv],
    o_proj: [h],
    fc1: [f],
    fc2: [h],
  };
  for (let i = 0; i < cfg.numLayers; i++) {
    for (const [canon, leaf] of opt ? OPT_LAYER : LLAMA_LAYER) {
      add(`layers.${i}.${canon}.weight`, shapes[canon], hf(`layers.${i}.${leaf}.weight`));
      if (opt) add(`layers.${i}.${canon}.bias`, biases[canon], hf(`layers.${i}.${leaf}.bias`));
    }
  }
  return out;
}

/** Maps checkpoint tensors onto the engine's names, checking presence and shapes. */
export function mapTensors(cfg: ModelConfig, tensors: SafetensorsTensor[]): NativeTensorRef[] {
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const refs: NativeTensorRef[] = [];
  for (const want of canonicalTensors(cfg)) {
    const src = want.sources.map((s) => byName.get(s)).find((t) => t !== undefined);
    if (!src) {
      if (want.optional) continue;
      throw new ModelError(`checkpoint is missing tensor '${want.sources[0]}' (${want.name}, shape [${want.shape.join(', ')}])`);
    }
    if (src.shape.length !== want.shape.length || src.shape.some((d, i) => d !== want.shape[i])) {
      throw new ModelError(`tensor '${src.name}' has shape [${src.shape.join(', ')}] but config.json implies [${want.shape.join(', ')}]`);
    }
    refs.push({ name: want.name, path: src.path, offset: src.offset, byteLength: src.byteLength, dtype: src.dtype, shape: src.shape });
  }
  return refs;
}
