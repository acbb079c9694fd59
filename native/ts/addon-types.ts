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

export type NativeWeightSource = { kind: 'synthetic'; seed: number } | { kind: 'files'; tensors: NativeTensorRef[] };

export interface NativeEngineOptions {
  device: NativeDevice;
  config: NativeModelConfig;
  weights: NativeWeightSource;
  /** Tokens per cache block (default 16). */
  blockTokens: number;
  /** Blocks in the KV pool and in the ACT pool; a block id spans all layers. */
  kvBlocks: number;
  actBlocks: number;
  /**
   * Blocks of the GPU cache tier (always KV, held in GPU memory and read in place; default 0). New
   * blocks go there while it has room, else to the host pools. The CPU backend emulates this tier.
   */
  gpuKvBlocks?: number;
  /** Default ACT fraction for blocks allocated from now on, in [0, 1]. */
  actFraction: number;
  /** CPU worker threads (0 = hardware concurrency). */
  threads?: number;
  /** Reuse the cache of full blocks shared with earlier prompts (prefix caching; default false). */
  prefixCaching?: boolean;
  /**
   * Split each step into mini-batches of at most this many staged tokens (new tokens plus cached
   * tokens in host-tier blocks; native/src/core/mini_batches.h): the size the plan laid the GPU's
   * staging memory out for (Plan.miniBatchTokens). 0 (default): one mini-batch per step.
   */
  miniBatchTokens?: number;
  /** CUDA only: GPU memory budget in bytes (0 = all free memory) and resident layers (-1 = as many as fit). */
  gpuMemoryBytes?: number;
  residentLayers?: number;
  /**
   * Storage of the decoder layers' GEMM weights (issue 14), quantised at load from the checkpoint
   * or synthetic f32 values: 'fp16' (default: the store dtype, f32 on the CPU), 'fp8' (e4m3,
   * per-output-channel scale), 'int8' (per-channel scale), 'int4' (groups of 128, scale + zero
   * point). Embeddings, norms, biases and lm_head stay unquantised. Both devices: the cuda
   * device streams the quantised bytes and dequantises them into its fp16 layer slot.
   */
  weightDtype?: 'fp16' | 'fp8' | 'int8' | 'int4';
  /**
   * Pipeline (issue 15): the layers split into contiguous stages that run at once on different
   * steps in flight. `stages`: CPU stages in this process (default 1); `gpus`: CUDA stages, one
   * per GPU (default 1). Each must be in [1, numLayers].
   */
  stages?: number;
  gpus?: number;
  /**
   * Stages in several processes, one stage each (cuda: one GPU each, NCCL between them, a build
   * with NCCL; cpu: TCP between them): this process's rank in [0, worldSize) and rank 0's
   * rendezvous address HOST:PORT. Rank 0 creates the engine (it waits for the other ranks to
   * join); every other rank calls runRank with the same options.
   */
  rank?: number;
  worldSize?: number;
  leaderAddress?: string;
  /** The group's shared secret (at most 256 bytes): every rank's hello and data connection must carry it. Never echoed. */
  pipelineToken?: string;
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
  /** Logit processors, applied in vLLM's order before sampling; absent = off. */
  /** Drop tokens whose probability is below minP times the best one's (0 = off). */
  minP?: number;
  /** Subtracted once from the logit of each token generated so far (0 = off). */
  presencePenalty?: number;
  /** Subtracted from a token's logit per time it was generated so far (0 = off). */
  frequencyPenalty?: number;
  /** Tokens in the prompt or generated so far: positive logits divided by it, negative multiplied (1 = off). */
  repetitionPenalty?: number;
  /** Until this many tokens are generated, stopTokenIds cannot be sampled (pass EOS among them). */
  minTokens?: number;
  stopTokenIds?: number[];
  /** [tokenId, bias] pairs added to the logits. */
  logitBias?: Array<[number, number]>;
  /** Return this sequence's sampled-token logprob (0) and also the top N alternatives (N ≤ 20); absent = none. */
  logprobs?: number;
}

export interface NativeSequenceOptions {
  sampling: NativeSamplingParams;
  /** Overrides the engine's ACT fraction for this sequence's blocks. */
  actFraction?: number;
  /** How many of the tokens are the prompt (default: all); the rest count as generated for the
   * penalties and minTokens (a preempted sequence re-added with its generated tokens). */
  promptTokens?: number;
}

/** The `code` of every error the addon raises (defined once in native/src/core/errors.h). */
export const NativeErrorCode = {
  InvalidArgument: 'HS_INVALID_ARGUMENT',
  OutOfBlocks: 'HS_OUT_OF_BLOCKS',
  UnknownSequence: 'HS_UNKNOWN_SEQUENCE',
  Busy: 'HS_BUSY',
  Closed: 'HS_CLOSED',
  /** A rank of a pipeline over processes is gone: the engine cannot step again (the server exits so that the group restarts). */
  PeerLost: 'HS_PEER_LOST',
  Internal: 'HS_INTERNAL',
} as const;
export type NativeErrorCode = (typeof NativeErrorCode)[keyof typeof NativeErrorCode];

/** An error thrown or rejected by the addon. */
export interface NativeError extends Error {
  code: NativeErrorCode;
}

/** True when `err` is an addon error with the given code (works across realms: no instanceof). */
export function isNativeError(err: unknown, code?: NativeErrorCode): err is NativeError {
  if (typeof err !== 'object' || err === null) return false;
  const c = (err as { code?: unknown }).code;
  return typeof c === 'string' && c.startsWith('HS_') && (code === undefined || c === code);
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
  /**
   * The step's slot, in [0, maxStepsInFlight) (default 0). Steps in different slots may be in
   * flight at once on disjoint sequences (a pipeline runs them on different stages at once); a slot
   * holds one step at a time (HS_BUSY otherwise).
   */
  slot?: number;
}

export interface NativeStepResult {
  /** Sampled next token per sequence, in the order of the ids passed; -1 when not Ok. */
  tokens: Int32Array;
  status: Int32Array;
  logits?: Float32Array;
  /**
   * Present when a sequence in the step asked for logprobs: the sampled token's logprob under
   * log_softmax of the raw logits, per id (NaN where not asked), and topN (id, logprob) pairs per
   * id, best first, row-major [n, topN], padded with -1 / NaN.
   */
  logprobs?: Float32Array;
  topN?: number;
  topTokenIds?: Int32Array;
  topLogprobs?: Float32Array;
  /** What this step did. */
  counters: NativeCounters;
}

/** One generated token's logprob and its top alternatives ([id, logprob], best first). */
export interface TokenLogprob {
  logprob: number;
  top: Array<[number, number]>;
}

/** The logprobs of row i of a step result, when the step returned any for it. */
export function stepLogprob(r: NativeStepResult, i: number): TokenLogprob | undefined {
  if (!r.logprobs || Number.isNaN(r.logprobs[i])) return undefined;
  const top: Array<[number, number]> = [];
  const n = r.topN ?? 0;
  for (let k = 0; k < n; k++) {
    const id = r.topTokenIds![i * n + k];
    if (id >= 0) top.push([id, r.topLogprobs![i * n + k]]);
  }
  return { logprob: r.logprobs[i], top };
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
  kvBlocksCachedIdle?: number;
  actBlocksCachedIdle?: number;
  /** Prompt tokens looked up in / found in the prefix cache since start, and cached blocks evicted. */
  prefixQueryTokens?: number;
  prefixHitTokens?: number;
  prefixEvictions?: number;
  /** Bytes of one block in each pool, across all layers. */
  kvBlockBytes: number;
  actBlockBytes: number;
  /** The GPU cache tier (KV blocks of kvBlockBytes each); always set by the addon, optional for test fakes. */
  gpuKvBlocksTotal?: number;
  gpuKvBlocksFree?: number;
}

export interface NativeSequenceInfo {
  id: number;
  /** Tokens held (prompt + generated, including the last sampled token not yet cached). */
  length: number;
  cachedTokens: number;
  /** Host-tier blocks of each kind, and GPU-tier (KV) blocks. */
  /** Prompt tokens whose cache came from the prefix cache when the sequence was added. */
  prefixHitTokens?: number;
  kvBlocks: number;
  actBlocks: number;
  gpuKvBlocks?: number;
}

export interface NativeEngineInfo {
  device: NativeDevice;
  deviceName: string;
  /** Bytes of weights held in host memory. */
  weightBytes: number;
  elementBytes: number;
  /** How many steps may be in flight at once (slots of step()); the addon always says, test doubles may not (then 1). */
  maxStepsInFlight?: number;
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
  /** Registers a sequence and reserves cache blocks for its prompt. Throws a RangeError with code HS_OUT_OF_BLOCKS when the pools cannot hold it. */
  addSequence(tokens: Int32Array, options: NativeSequenceOptions): number;
  /** Frees the sequence's blocks at once, or when the step running it returns (the engine defers removal of a sequence in flight). Unknown ids throw RangeError (code HS_UNKNOWN_SEQUENCE). */
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
  /**
   * A rank >= 1 of a pipeline over processes: loads the weights, joins rank 0, runs its stage until
   * rank 0 stops (resolves) or fails (rejects). Pool sizes come from rank 0.
   */
  runRank(options: NativeEngineOptions): Promise<void>;
  /** Measures the device's GEMM rate (and PCIe bandwidth on CUDA). */
  probe(device: NativeDevice, threads?: number): Promise<NativeProbeResult>;
  /** Devices this build supports ('cpu' always; 'cuda' when built with CUDA and a GPU is present). */
  devices(): NativeDevice[];
  /** GPUs this process sees (cudaGetDeviceCount, after CUDA_VISIBLE_DEVICES); 0 in a build without CUDA. */
  gpuCount(): number;
  version: string;
}
