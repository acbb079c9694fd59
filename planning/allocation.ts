// Two-step allocation of host memory.
// Step 1 sizes the pod: pinned weights + cache budget + runtime overhead, within the node's
// allocatable memory less headroom; the pod's memory request and limit follow.
// Step 2 splits the cache budget into a KV block pool and an ACT block pool for the chosen ACT
// fraction; an ACT block holds the same number of tokens as a KV block at ACT/KV of the bytes.
import type { ModelProfile } from './model-profile.js';
import { PlanError } from './errors.js';
import { fmtGiB } from './cost-model.js';

const GiB = 2 ** 30;
const MiB = 2 ** 20;

/** Default headroom left on a node for everything else (kubelet eviction margin, daemonsets). */
export function defaultHeadroomBytes(nodeAllocatableBytes: number): number {
  return Math.max(4 * GiB, 0.05 * nodeAllocatableBytes);
}

export interface HostBudgetSpec {
  /** Share of (allocatable − headroom) for this pod, in (0, 1]; e.g. 1/gpuCount. Default 1. */
  share?: number;
  /** An explicit budget; capped at (allocatable − headroom). Wins over share. */
  bytes?: number;
  headroomBytes?: number;
}

export interface HostBudget {
  bytes: number;
  usableBytes: number;
  headroomBytes: number;
  /** The explicit bytes asked for more than the node can give. */
  clamped: boolean;
}

/** Step 1a: the pod's host memory budget on a node, rounded down to whole MiB. */
export function hostMemoryBudgetDetail(nodeAllocatableBytes: number, spec: HostBudgetSpec = {}): HostBudget {
  if (!(Number.isFinite(nodeAllocatableBytes) && nodeAllocatableBytes >= 0)) {
    throw new PlanError(`node allocatable memory must be a non-negative number of bytes, got ${nodeAllocatableBytes}`);
  }
  const headroomBytes = spec.headroomBytes ?? defaultHeadroomBytes(nodeAllocatableBytes);
  if (!(Number.isFinite(headroomBytes) && headroomBytes >= 0)) throw new PlanError(`headroom must be ≥ 0 bytes, got ${headroomBytes}`);
  const usableBytes = Math.max(0, nodeAllocatableBytes - headroomBytes);
  let want: number;
  if (spec.bytes !== undefined) {
    if (!(Number.isFinite(spec.bytes) && spec.bytes > 0)) throw new PlanError(`host memory bytes must be positive, got ${spec.bytes}`);
    want = spec.bytes;
  } else {
    const share = spec.share ?? 1;
    if (!(share > 0 && share <= 1)) throw new PlanError(`host memory share must be in (0, 1], got ${share}`);
    want = usableBytes * share;
  }
  const bytes = Math.floor(Math.min(want, usableBytes) / MiB) * MiB;
  return { bytes, usableBytes, headroomBytes, clamped: spec.bytes !== undefined && spec.bytes > usableBytes };
}

export function hostMemoryBudget(nodeAllocatableBytes: number, spec: HostBudgetSpec = {}): number {
  return hostMemoryBudgetDetail(nodeAllocatableBytes, spec).bytes;
}

/** Node.js heap, tokenizer, staging buffers, allocator slack: max(2 GiB, 3%). */
export function runtimeOverheadBytes(hostMemoryBytes: number): number {
  return Math.max(2 * GiB, 0.03 * hostMemoryBytes);
}

export interface HostLayout {
  hostMemoryBytes: number;
  /** All weights, pinned (the engine keeps a host copy even of GPU-resident layers). */
  weightBytes: number;
  runtimeBytes: number;
  cacheBytes: number;
}

/** Step 1b: what of the pod's budget is left for the cache. */
/** `runtimeReserve`: keep back the process's own memory (a pod's limit); false when the budget is the weights and cache alone. */
export function hostLayout(mp: ModelProfile, hostMemoryBytes: number, runtimeReserve = true): HostLayout {
  if (!(Number.isFinite(hostMemoryBytes) && hostMemoryBytes > 0)) {
    throw new PlanError(`host memory must be a positive number of bytes, got ${hostMemoryBytes}`);
  }
  const runtimeBytes = runtimeReserve ? runtimeOverheadBytes(hostMemoryBytes) : 0;
  const cacheBytes = Math.floor(hostMemoryBytes - mp.weightBytes - runtimeBytes);
  if (cacheBytes <= 0) {
    throw new PlanError(
      `host memory ${fmtGiB(hostMemoryBytes)} cannot hold ${mp.name}: weights ${fmtGiB(mp.weightBytes)} + ` +
        `runtime ${fmtGiB(runtimeBytes)} leave no room for the cache`,
    );
  }
  return { hostMemoryBytes, weightBytes: mp.weightBytes, runtimeBytes, cacheBytes };
}

/** Pod resources: request = limit = the budget (pinned memory cannot be reclaimed; Guaranteed QoS). */
export function podMemoryResources(hostMemoryBytes: number): { requestBytes: number; limitBytes: number } {
  return { requestBytes: hostMemoryBytes, limitBytes: hostMemoryBytes };
}

/** Cache bytes of one token across all layers at ACT fraction a. */
export function tokenCacheBytes(mp: ModelProfile, a: number): number {
  return mp.numLayers * ((1 - a) * mp.kvBytesPerToken + a * mp.actBytesPerToken);
}

/** Sequences of `seqTokens` the cache holds at fraction a, ignoring block rounding (the solver's view). */
export function capacitySequences(mp: ModelProfile, cacheBytes: number, a: number, seqTokens: number): number {
  return cacheBytes / (tokenCacheBytes(mp, a) * seqTokens);
}

/** Blocks of each kind one sequence of `seqTokens` needs at fraction a (rounded up, so conservative). */
export function blocksPerSequence(a: number, seqTokens: number, blockTokens: number): { kv: number; act: number } {
  const n = Math.ceil(seqTokens / blockTokens);
  const eps = 1e-9; // 0.3·10 must be 3, not 4
  return { kv: Math.max(0, Math.ceil((1 - a) * n - eps)), act: Math.max(0, Math.ceil(a * n - eps)) };
}

export interface PoolSplit {
  blockTokens: number;
  kvBlocks: number;
  actBlocks: number;
  /** Bytes of one block across all layers. */
  kvBlockBytes: number;
  actBlockBytes: number;
  kvBlocksPerSequence: number;
  actBlocksPerSequence: number;
  maxBatch: number;
  /** kvBlocks·kvBlockBytes + actBlocks·actBlockBytes ≤ cacheBytes. */
  usedBytes: number;
}

/**
 * Step 2: splits the cache budget into KV and ACT pools in proportion to what one sequence of
 * `seqTokens` needs at fraction a, so that the pools run out together; maxBatch is what both hold
 * (capped at maxBatchCap).
 */
export function splitCache(
  mp: ModelProfile,
  cacheBytes: number,
  a: number,
  blockTokens: number,
  seqTokens: number,
  maxBatchCap = Infinity,
): PoolSplit {
  if (!(Number.isInteger(blockTokens) && blockTokens > 0))
    throw new PlanError(`blockTokens must be a positive integer, got ${blockTokens}`);
  const kvBlockBytes = blockTokens * mp.numLayers * mp.kvBytesPerToken;
  const actBlockBytes = blockTokens * mp.numLayers * mp.actBytesPerToken;
  const per = blocksPerSequence(a, seqTokens, blockTokens);
  const seqBytes = per.kv * kvBlockBytes + per.act * actBlockBytes;
  const kvShare = (per.kv * kvBlockBytes) / seqBytes;
  const kvBlocks = Math.floor((cacheBytes * kvShare) / kvBlockBytes);
  const actBlocks = Math.floor((cacheBytes * (1 - kvShare)) / actBlockBytes);
  const fit = (blocks: number, need: number) => (need === 0 ? Infinity : Math.floor(blocks / need));
  const maxBatch = Math.max(0, Math.min(maxBatchCap, fit(kvBlocks, per.kv), fit(actBlocks, per.act)));
  return {
    blockTokens,
    kvBlocks,
    actBlocks,
    kvBlockBytes,
    actBlockBytes,
    kvBlocksPerSequence: per.kv,
    actBlocksPerSequence: per.act,
    maxBatch,
    usedBytes: kvBlocks * kvBlockBytes + actBlocks * actBlockBytes,
  };
}

/**
 * The ACT fractions the pools can serve at a given batch: with fixed pools (sizes apply at start),
 * live retuning must stay where maxBatch sequences of seqTokens still fit both pools.
 */
export function fractionBoundsForPools(
  kvBlocks: number,
  actBlocks: number,
  batch: number,
  seqTokens: number,
  blockTokens: number,
): { min: number; max: number } {
  const n = Math.ceil(seqTokens / blockTokens);
  const max = Math.min(1, Math.floor(actBlocks / Math.max(1, batch)) / n);
  const min = Math.max(0, 1 - Math.floor(kvBlocks / Math.max(1, batch)) / n);
  const r = (x: number) => Math.round(x * 1e6) / 1e6;
  return min <= max ? { min: r(min), max: r(max) } : { min: r(max), max: r(max) };
}
