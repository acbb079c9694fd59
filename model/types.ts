// The architecture description shared by every part: the engine (native), planning and the CLI.
// Field names follow the engine's needs, not any one checkpoint format; model/config.ts maps
// Hugging Face config.json files onto this.

export type Architecture = 'opt' | 'llama';

export interface ModelConfig {
  /** Short human name: a preset name or the checkpoint directory's base name. */
  name: string;
  arch: Architecture;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  /** Key/value heads; < numHeads means grouped-query attention. */
  numKvHeads: number;
  headDim: number;
  ffnSize: number;
  maxPositions: number;
  /** LayerNorm (OPT) or RMSNorm (Llama) epsilon. */
  normEps: number;
  /** RoPE base (Llama only; ignored for OPT). */
  ropeTheta: number;
  /** lm_head shares the token embedding matrix. */
  tieEmbeddings: boolean;
  bosTokenId: number;
  eosTokenId: number;
}

/** Bytes per token per layer of a KV entry and of an ACT entry for a given element size. */
export function cacheBytesPerTokenPerLayer(cfg: ModelConfig, elementBytes: number): { kv: number; act: number } {
  return {
    kv: 2 * cfg.numKvHeads * cfg.headDim * elementBytes,
    act: cfg.hiddenSize * elementBytes,
  };
}
