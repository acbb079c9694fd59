// Hugging Face config.json → ModelConfig, for the two supported architectures (OPT and Llama).
// Pure: takes the parsed JSON (unknown) and a display name; every problem is a ModelError that
// names the field. Options the engine does not implement are refused, never silently ignored.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ModelError, describeError, describeJsonError } from './errors.js';
import type { ModelConfig } from './types.js';

/** Upper bound for any dimension; keeps absurd values from turning into huge allocations. */
const MAX_DIM = 2 ** 24;

type Json = Record<string, unknown>;

class Fields {
  constructor(
    private readonly obj: Json,
    private readonly where: string,
  ) {}

  fail(field: string, what: string): never {
    throw new ModelError(`${this.where}: '${field}' ${what}`);
  }

  has(field: string): boolean {
    return this.obj[field] !== undefined && this.obj[field] !== null;
  }

  int(field: string, fallback?: number, min = 1, max = MAX_DIM): number {
    const v = this.obj[field];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      this.fail(field, 'is missing');
    }
    if (typeof v !== 'number' || !Number.isInteger(v)) this.fail(field, `must be an integer, got ${JSON.stringify(v)}`);
    if (v < min || v > max) this.fail(field, `must be between ${min} and ${max}, got ${v}`);
    return v;
  }

  num(field: string, fallback: number | undefined, check: (n: number) => boolean, rule: string): number {
    const v = this.obj[field];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      this.fail(field, 'is missing');
    }
    if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) this.fail(field, `must be ${rule}, got ${JSON.stringify(v)}`);
    return v;
  }

  bool(field: string, fallback: boolean): boolean {
    const v = this.obj[field];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') this.fail(field, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  str(field: string, fallback: string): string {
    const v = this.obj[field];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'string') this.fail(field, `must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  /** A token id, or a list of them (Llama 3 lists several EOS ids): the first one. */
  tokenId(field: string, fallback: number, vocab: number): number {
    let v = this.obj[field];
    if (Array.isArray(v)) {
      if (v.length === 0) this.fail(field, 'must not be an empty list');
      v = v[0];
    }
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= vocab) {
      this.fail(field, `must be a token id in [0, ${vocab}), got ${JSON.stringify(this.obj[field])}`);
    }
    return v;
  }
}

export function parseHfConfig(json: unknown, name: string, where = 'config.json'): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModelError(`${where}: must be a JSON object`);
  }
  const f = new Fields(json as Json, where);
  const modelType = f.str('model_type', '');
  if (modelType === '') f.fail('model_type', 'is missing (expected "opt" or "llama")');
  if (modelType === 'opt') return parseOpt(f, name);
  if (modelType === 'llama') return parseLlama(f, name, json as Json);
  return f.fail('model_type', `is "${modelType}": unsupported architecture (supported: opt, llama)`);
}

function common(f: Fields) {
  const hiddenSize = f.int('hidden_size');
  const numLayers = f.int('num_hidden_layers', undefined, 1, 4096);
  const numHeads = f.int('num_attention_heads', undefined, 1, 4096);
  const vocabSize = f.int('vocab_size', undefined, 1, 2 ** 22);
  const maxPositions = f.int('max_position_embeddings', undefined, 1, 2 ** 22);
  return { hiddenSize, numLayers, numHeads, vocabSize, maxPositions };
}

function parseOpt(f: Fields, name: string): ModelConfig {
  const c = common(f);
  if (c.hiddenSize % c.numHeads !== 0) {
    f.fail('hidden_size', `(${c.hiddenSize}) must be divisible by num_attention_heads (${c.numHeads})`);
  }
  const ffnSize = f.int('ffn_dim');
  if (!f.bool('do_layer_norm_before', true)) {
    f.fail('do_layer_norm_before', 'is false (post-LayerNorm OPT, e.g. opt-350m): unsupported, only pre-LayerNorm OPT is');
  }
  const proj = f.int('word_embed_proj_dim', c.hiddenSize);
  if (proj !== c.hiddenSize) {
    f.fail('word_embed_proj_dim', `(${proj}) differs from hidden_size (${c.hiddenSize}): embedding projections are unsupported`);
  }
  if (!f.bool('enable_bias', true)) f.fail('enable_bias', 'is false: OPT without biases is unsupported');
  if (!f.bool('layer_norm_elementwise_affine', true)) f.fail('layer_norm_elementwise_affine', 'is false: unsupported');
  if (f.bool('_remove_final_layer_norm', false)) f.fail('_remove_final_layer_norm', 'is true: unsupported');
  const act = f.str('activation_function', 'relu');
  if (act !== 'relu') f.fail('activation_function', `is "${act}": only relu is supported for OPT`);
  return {
    name,
    arch: 'opt',
    ...c,
    numKvHeads: c.numHeads,
    headDim: c.hiddenSize / c.numHeads,
    ffnSize,
    normEps: f.num('layer_norm_eps', 1e-5, (n) => n > 0 && n < 1, 'a number in (0, 1)'),
    ropeTheta: 10000,
    tieEmbeddings: f.bool('tie_word_embeddings', true),
    bosTokenId: f.tokenId('bos_token_id', 2, c.vocabSize),
    eosTokenId: f.tokenId('eos_token_id', 2, c.vocabSize),
  };
}

function parseLlama(f: Fields, name: string, raw: Json): ModelConfig {
  const c = common(f);
  const numKvHeads = f.int('num_key_value_heads', c.numHeads, 1, 4096);
  if (c.numHeads % numKvHeads !== 0) {
    f.fail('num_key_value_heads', `(${numKvHeads}) must divide num_attention_heads (${c.numHeads})`);
  }
  if (!f.has('head_dim') && c.hiddenSize % c.numHeads !== 0) {
    f.fail('hidden_size', `(${c.hiddenSize}) must be divisible by num_attention_heads (${c.numHeads}) when head_dim is not given`);
  }
  const headDim = f.int('head_dim', c.hiddenSize / c.numHeads);
  if (headDim % 2 !== 0) f.fail('head_dim', `(${headDim}) must be even for rotary embeddings`);
  const act = f.str('hidden_act', 'silu');
  if (act !== 'silu') f.fail('hidden_act', `is "${act}": only silu is supported for Llama`);
  if (f.bool('attention_bias', false)) f.fail('attention_bias', 'is true: Llama attention biases are unsupported');
  if (f.bool('mlp_bias', false)) f.fail('mlp_bias', 'is true: Llama MLP biases are unsupported');
  if (f.int('pretraining_tp', 1, 1, 1024) !== 1) f.fail('pretraining_tp', 'must be 1');
  return {
    name,
    arch: 'llama',
    ...c,
    numKvHeads,
    headDim,
    ffnSize: f.int('intermediate_size'),
    normEps: f.num('rms_norm_eps', 1e-6, (n) => n > 0 && n < 1, 'a number in (0, 1)'),
    ropeTheta: ropeTheta(f, raw),
    tieEmbeddings: f.bool('tie_word_embeddings', false),
    bosTokenId: f.tokenId('bos_token_id', 1, c.vocabSize),
    eosTokenId: f.tokenId('eos_token_id', 2, c.vocabSize),
  };
}

/**
 * RoPE base. transformers < 5 writes `rope_theta` (+ `rope_scaling`, which must be null);
 * transformers 5 writes `rope_parameters: { rope_theta, rope_type }`, whose type must be "default".
 */
function ropeTheta(f: Fields, raw: Json): number {
  const positive = (n: number) => n > 0;
  if (f.has('rope_scaling')) {
    f.fail('rope_scaling', `is ${JSON.stringify(raw.rope_scaling)}: RoPE scaling is unsupported (only plain RoPE)`);
  }
  const params = raw.rope_parameters;
  if (params !== undefined && params !== null) {
    if (typeof params !== 'object' || Array.isArray(params)) f.fail('rope_parameters', 'must be an object');
    const p = new Fields(params as Json, 'config.json rope_parameters');
    const type = p.str('rope_type', 'default');
    if (type !== 'default') f.fail('rope_parameters', `has rope_type "${type}": RoPE scaling is unsupported (only "default")`);
    if (p.has('rope_theta')) return p.num('rope_theta', undefined, positive, 'a positive number');
  }
  return f.num('rope_theta', 10000, positive, 'a positive number');
}

/** Reads and parses `<dir>/config.json`. */
export async function readHfConfig(dir: string): Promise<ModelConfig> {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ModelError(`${dir}: no config.json (is this a Hugging Face checkpoint directory?)`);
    throw new ModelError(`cannot read ${file}: ${describeError(err)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ModelError(`${file}: ${describeJsonError(err)}`);
  }
  return parseHfConfig(json, path.basename(path.resolve(dir)), file);
}
