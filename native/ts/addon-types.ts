// The whole surface of the native addon (build/hybridserve.node), typed in one place.
// The addon is mechanism only: it runs steps for sequences described by block tables and counts
// what it did. Policy (which ACT fraction, which sequences run together, when to stop) lives in TS.
// Every blocking call returns a Promise (an AsyncWorker in C++); the synchronous calls only touch
// bookkeeping and never compute.

export type NativeArch = 'opt' | 'llama';
export type NativeDType = 'F32' | 'F16' | 'BF16';
export type NativeDevice = 'cpu' | 'cuda';

/** Mirrors model/types.ts ModelConfig (numbers only; names as there). */
export interface NativeModelConfig {
  arch: NativeArch;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  ffnSize: number;
  maxPositions: number;
  normEps: number;
  ropeTheta: number;
  tieEmbeddings: boolean;
}

/**
 * One tensor in a safetensors file, already validated by model/safetensors.ts. `name` is the
 * engine's canonical name (see native/README.md), not the checkpoint's.
 */
export interface NativeTensorRef {
  name: string;
  path: string;
  /** Absolute byte offset of the tensor data in the file. */
  offset: number;
  byteLength: number;
  dtype: NativeDType;
  shape: number[];
}

export type NativeWeightSource =
  | { kind: 'synthetic'; seed: number }
  | { kind: 'files'; tensors: NativeTensorRef[] };

export interface NativeEngineOptions {
  device: NativeDevice;
  config: NativeModelConfig;
  weights: NativeWeightSource;
  /** Tokens per cache block (default 16). */
  blockTokens: number;
  /** Blocks in the KV pool and in the ACT pool; a block id spans all layers. */
  kvBlocks: number;
  actBlocks: number;
  /** Default ACT fraction for blocks allocated from now on, in [0, 1]. */
  actFraction: number;
  /** CPU worker threads (0 = hardware concurrency). */
  threads?: number;
  /** Reuse the cache of full blocks shared with earlier prompts (prefix caching; default false). */
  prefixCaching?: boolean;
  /** CUDA only: GPU memory budget in bytes (0 = all free memory) and resident layers (-1 = as many as fit). */
  gpuMemoryBytes?: number;
  residentLayers?: number;
}

export interface NativeSamplingParams {
  /** 0 means greedy. */
  temperature: number;
  /** 0 means no top-k cut. */
  topK: number;
  /** 1 means no nucleus cut. */
  topP: number;
  /** Seeds this sequence's own RNG, so results do not depend on batch composition. */
  seed: number;
}

export interface NativeSequenceOptions {
  sampling: NativeSamplingParams;
  /** Overrides the engine's ACT fraction for this sequence's blocks. */
  actFraction?: number;
}

/** Per-sequence outcome of a step. */
export const enum NativeSeqStatus {
  Ok = 0,
  /** The pools could not hold this sequence's next token; it did not advance. Free blocks or preempt. */
  OutOfBlocks = 1,
}

export interface NativeStepOptions {
  /** Return the logits of the last position of each sequence ([n, vocab] row-major). */
  logits?: boolean;
}

export interface NativeStepResult {
  /** Sampled next token per sequence, in the order of the ids passed; -1 when not Ok. */
  tokens: Int32Array;
  status: Int32Array;
  logits?: Float32Array;
  /** What this step did. */
  counters: NativeCounters;
}

export interface NativeCounters {
  steps: number;
  prefillTokens: number;
  decodeTokens: number;
  /** Bytes read (CPU) or moved host-to-device (CUDA) by kind. */
  weightBytesH2D: number;
  kvBytesH2D: number;
  actBytesH2D: number;
  /** Bytes of new cache written back (device-to-host on CUDA). */
  kvBytesD2H: number;
  actBytesD2H: number;
  /** Seconds in each phase. On CPU, transfer and idle are 0. */
  transferSeconds: number;
  computeSeconds: number;
  recomputeSeconds: number;
  idleSeconds: number;
  /** Wall time of the step(s). */
  wallSeconds: number;
  /** Tokens whose K/V were recomputed from ACT. */
  recomputedTokens: number;
}

export interface NativePoolStats {
  blockTokens: number;
  kvBlocksTotal: number;
  /** Blocks a new sequence can get: free ones plus idle prefix-cached ones (evictable). */
  kvBlocksFree: number;
  actBlocksTotal: number;
  actBlocksFree: number;
  /** Unreferenced blocks kept for the prefix cache (counted in the free figures above). */
  kvBlocksCachedIdle: number;
  actBlocksCachedIdle: number;
  /** Prompt tokens looked up in / found in the prefix cache since start, and cached blocks evicted. */
  prefixQueryTokens: number;
  prefixHitTokens: number;
  prefixEvictions: number;
  /** Bytes of one block in each pool, across all layers. */
  kvBlockBytes: number;
  actBlockBytes: number;
}

export interface NativeSequenceInfo {
  id: number;
  /** Tokens held (prompt + generated, including the last sampled token not yet cached). */
  length: number;
  cachedTokens: number;
  /** Prompt tokens whose cache came from the prefix cache when the sequence was added. */
  prefixHitTokens: number;
  kvBlocks: number;
  actBlocks: number;
}

export interface NativeEngineInfo {
  device: NativeDevice;
  deviceName: string;
  /** Bytes of weights held in host memory. */
  weightBytes: number;
  elementBytes: number;
}

export interface NativeProbeResult {
  /** Achieved GEMM rate in FLOP/s for a large fp32 (CPU) or fp16 (CUDA) GEMM. */
  gemmFlops: number;
  /** Pinned host-to-device / device-to-host bandwidth in bytes/s (0 on CPU). */
  h2dBytesPerSecond: number;
  d2hBytesPerSecond: number;
}

export interface NativeEngine {
  info(): NativeEngineInfo;
  /** Registers a sequence and reserves cache blocks for its prompt. Throws RangeError('out of cache blocks: ...') when the pools cannot hold it. */
  addSequence(tokens: Int32Array, options: NativeSequenceOptions): number;
  /** Frees the sequence's blocks at once, or when the step running it returns (the engine defers removal of a sequence in flight). Unknown ids throw RangeError. */
  removeSequence(id: number): void;
  sequence(id: number): NativeSequenceInfo;
  /**
   * Runs one step for the given sequences: each one's uncached tokens (its prompt on its first
   * step, its last sampled token afterwards) go through the model, their cache is written as KV or
   * ACT per its block table, and a next token is sampled and appended. One step at a time.
   */
  step(ids: Int32Array, options?: NativeStepOptions): Promise<NativeStepResult>;
  setActFraction(fraction: number): void;
  actFraction(): number;
  pools(): NativePoolStats;
  /** Totals since the engine was created. */
  counters(): NativeCounters;
  /** Releases the weights and pools; the engine is unusable afterwards. */
  close(): Promise<void>;
}

export interface NativeAddon {
  createEngine(options: NativeEngineOptions): Promise<NativeEngine>;
  /** Measures the device's GEMM rate (and PCIe bandwidth on CUDA). */
  probe(device: NativeDevice, threads?: number): Promise<NativeProbeResult>;
  /** Devices this build supports ('cpu' always; 'cuda' when built with CUDA and a GPU is present). */
  devices(): NativeDevice[];
  version: string;
}
