// The cost model: predicted time of a decode step (and of a prefill) for one ACT fraction, batch
// and context length, on one GPU with a memory budget. Pure arithmetic; docs/planning.md derives it.
//
// Per layer l of a decode step with b sequences and N = b·s cached tokens, ACT fraction a:
// N splits into N_gpu = min(N, G) tokens in the GPU cache tier (G = layout.gpuKvTokens; read in place,
// never streamed, always KV) and N_host = N − N_gpu in the host tier (streamed every step):
//   transfer  = [W_l + N_host·((1−a)·KV + a·ACT)] / B_h2d  +  b_host·((1−a)·KV + a·ACT) / B_d2h
//               (W_l = layer bytes when the layer streams, 0 when resident; write-back counted
//                serially with H2D because concurrent D2H slows H2D on real links)
//   compute   = max(2·P_l·b / F, m·S_l / (HBM·e_w))       new-token GEMMs, m mini-batches each
//               + max(4·qDim·N / F, N·KV / (HBM·e_a))     reading the layer's fp16 slot (S_l) from HBM;
//               + (W_l + S_l) / HBM for quantised weights  attention; the dequantisation into the slot
//   recompute = a·N_host·4·h·kvDim / F                    K/V rebuilt from ACT
//   layer     = (transfer^p + gpu^p)^(1/p), gpu = compute + recompute
//               copies overlap GPU work (separate streams); the power mean is the larger of the two
//               when one dominates and up to 2^(1/p) more when they are even (the zig-zag's items
//               then wait on each other)
// step = Σ_l layer + lm_head (max(2·V·h·b / F, V·h·e / HBM)) + b·HOST_SECONDS_PER_SEQUENCE.
// The constants e_w (GEMM_WEIGHT_READ_EFFICIENCY), e_a (ATTENTION_HBM_EFFICIENCY), p
// (OVERLAP_SHARPNESS), HOST_SECONDS_PER_SEQUENCE and PREFILL_EFFICIENCY were fitted to OPT-13B runs on an H200
// (docs/performance.md, "Planner against the sweep"): the resident run, the all-on-host run and a
// 24 GiB sweep at 4 and 9 mini-batches.
import type { HardwareProfile } from './hardware.js';
import type { ModelProfile } from './model-profile.js';
import { PlanError } from './errors.js';
import { engineLayerBufferBytes } from './engine-workspace.js';

const GiB = 2 ** 30;

/** How the GPU budget is used. */
export interface GpuLayout {
  budgetBytes: number;
  /** gpuReserveBytes: the CUDA context, cuBLAS workspace, allocator slack. */
  reserveBytes: number;
  headBytes: number;
  residentLayers: number;
  /** The engine's layer slots (engineLayerBufferBytes; 0 for fp16 when every layer is resident). */
  layerBufferBytes: number;
  /** KV + ACT working buffers for one mini-batch of one layer, double-buffered. */
  cacheBufferBytes: number;
  /** Cached tokens one mini-batch may hold (cacheBufferBytes / (2·(KV + ACT))). */
  miniBatchTokens: number;
  /**
   * The engine's step workspace for the planned run (engine-workspace.ts), counted in usedBytes (it
   * holds the cacheBufferBytes of staging); absent for gpuLayout's batch-independent layout.
   */
  workspaceBytes?: number;
  /** New tokens (rows) of the largest step that workspace holds (engine-workspace.ts workspaceStepRows). */
  stepTokens?: number;
  /** Sum of the parts; ≤ budgetBytes. */
  usedBytes: number;
  /** The GPU cache tier (placement.ts): KV blocks held in HBM and the tokens they hold (absent: none). */
  gpuKvBlocks?: number;
  gpuKvTokens?: number;
}

/**
 * Share of the HBM rate the paged-attention kernel reaches when it reads the cache (H200, OPT-13B,
 * batch 128, every block in the GPU tier: 26.4 ms of GPU work per decode step, of which 14.4 ms
 * are attention over 55.4 GB of KV once the weights' reads below are taken out).
 */
export const ATTENTION_HBM_EFFICIENCY = 0.9;
/**
 * Share of the HBM rate at which a decode step's small GEMMs (a mini-batch's few rows against a
 * layer) read the layer's weights, kernel launches and the step's small kernels included. H200,
 * OPT-13B, batch 128 (2026-12-01, after the cuBLASLt QKV and the fused epilogues): the four GEMMs of
 * a layer take 0.198 ms alone (0.76 of 4.29 TB/s, hs_prefill_parts_bench) and the norms and bias
 * kernels 0.016 ms more; 0.7 puts the resident step (23.0 ms measured) at +0.7% and every 24 GiB row
 * (4, 6, 8 and 9 mini-batches, this and earlier sessions) within −6.3% … +0.6%, where the
 * copies dominate and this constant moves the prediction by under 1%.
 */
export const GEMM_WEIGHT_READ_EFFICIENCY = 0.7;
/**
 * How sharply a layer's time goes from "GPU work and copies overlap" to "the larger one bounds it"
 * (the power mean's exponent in the layer time above). Fitted: 24 GiB steps with GPU work at 0.78
 * and at 0.94 of the copies took 1.01× and 1.10× the copies' time.
 */
export const OVERLAP_SHARPNESS = 8;
/**
 * Host work per sequence per step outside the GPU's critical path estimate (block-table layouts,
 * metadata upload, the tokens' copy): 0.3 ms for 128 sequences on the H200 host (decode forward
 * 24.8 ms against 24.5 ms of GPU work), since greedy steps pick their tokens on the GPU; it was
 * 4.8 ms while 25.7 MB of logits crossed to the host every step.
 */
export const HOST_SECONDS_PER_SEQUENCE = 2.5e-6;
/**
 * Share of the GEMM rate a prefill reaches over a layer (its GEMMs, causal attention through score
 * buffers, norms and the cache write): OPT-13B, 128 prompts of 512 tokens, took 2.98 s with every
 * layer resident and 3.31 s with every layer streamed on the H200, against 2.4 s of GEMM work at
 * the table's rate; 0.76 predicts 3.13 s for both (±5%).
 */
export const PREFILL_EFFICIENCY = 0.76;

/**
 * Time of a layer whose copies (`transfer`) overlap its GPU work (`gpu`): their power mean with
 * exponent `p` (Infinity: the larger of the two).
 */
export function overlapped(transfer: number, gpu: number, p = OVERLAP_SHARPNESS): number {
  const hi = Math.max(transfer, gpu);
  if (hi <= 0 || !Number.isFinite(p)) return hi;
  const lo = Math.min(transfer, gpu) / hi;
  return hi * Math.pow(1 + Math.pow(lo, p), 1 / p);
}

/** The smallest mini-batch working set we plan for, in tokens (a GEMM of fewer rows runs poorly). */
export const MIN_MINIBATCH_TOKENS = 8192;

/**
 * GPU memory a layout keeps back from the budget for what it does not lay out: the CUDA context,
 * cuBLAS's and cuBLASLt's workspaces (32 MiB), allocator slack, and small engine allocations such as
 * the fp32 copies of the residual GEMMs' biases (1.6 MB for OPT-13B). (The engine's --gpu-memory cap counts only its
 * own allocations, so a plan under a cap also fits a card of that size.)
 */
export function gpuReserveBytes(budgetBytes: number): number {
  return Math.max(GiB, 0.03 * budgetBytes);
}

/**
 * Lays out the GPU budget: fixed reserve and head first, then as many resident layers as fit next to
 * the cache working buffers for at least max(seqTokens, MIN_MINIBATCH_TOKENS) tokens; what is left
 * grows the cache buffers. Throws PlanError when not even one streamed layer fits.
 */
export function gpuLayout(mp: ModelProfile, gpuBudgetBytes: number, seqTokens: number): GpuLayout {
  if (!(gpuBudgetBytes > 0 && Number.isFinite(gpuBudgetBytes))) {
    throw new PlanError(`GPU memory budget must be a positive number of bytes, got ${gpuBudgetBytes}`);
  }
  const perTokenBuf = 2 * (mp.kvBytesPerToken + mp.actBytesPerToken);
  const reserveBytes = gpuReserveBytes(gpuBudgetBytes);
  const fixed = reserveBytes + mp.headBytes;
  const minCache = perTokenBuf * Math.max(seqTokens, MIN_MINIBATCH_TOKENS);
  const L = mp.numLayers;

  let residentLayers: number;
  let buffers: number;
  if (fixed + L * mp.layerBytes + engineLayerBufferBytes(mp, false) + minCache <= gpuBudgetBytes) {
    residentLayers = L;
    buffers = engineLayerBufferBytes(mp, false);
  } else {
    buffers = engineLayerBufferBytes(mp, true);
    const avail = gpuBudgetBytes - fixed - buffers - minCache;
    if (avail < 0) {
      throw new PlanError(
        `GPU memory ${fmtGiB(gpuBudgetBytes)} is too small for ${mp.name}: needs at least ` +
          `${fmtGiB(fixed + buffers + minCache)} (reserve ${fmtGiB(reserveBytes)} + embeddings/lm_head ` +
          `${fmtGiB(mp.headBytes)} + layer buffers ${fmtGiB(buffers)} + cache buffers ${fmtGiB(minCache)})`,
      );
    }
    residentLayers = Math.min(L - 1, Math.floor(avail / mp.layerBytes));
  }
  const cacheBufferBytes = gpuBudgetBytes - fixed - buffers - residentLayers * mp.layerBytes;
  const miniBatchTokens = Math.floor(cacheBufferBytes / perTokenBuf);
  return {
    budgetBytes: gpuBudgetBytes,
    reserveBytes,
    headBytes: mp.headBytes,
    residentLayers,
    layerBufferBytes: buffers,
    cacheBufferBytes,
    miniBatchTokens,
    usedBytes: reserveBytes + mp.headBytes + buffers + residentLayers * mp.layerBytes + cacheBufferBytes,
  };
}

export interface StepInput {
  actFraction: number;
  /** Sequences in the step (may be fractional when the solver reasons about capacity). */
  batch: number;
  /** Mean cached tokens per sequence. */
  contextTokens: number;
}

export interface LayerTimes {
  transferSeconds: number;
  computeSeconds: number;
  recomputeSeconds: number;
  /** overlapped(transfer, compute + recompute). */
  seconds: number;
}

export interface StepCost {
  stepSeconds: number;
  /** Summed over layers (each phase's own time; they overlap within a layer). */
  transferSeconds: number;
  computeSeconds: number;
  recomputeSeconds: number;
  /** GPU waiting for copies: Σ max(0, transfer − compute − recompute). */
  idleSeconds: number;
  headSeconds: number;
  miniBatches: number;
  resident: LayerTimes;
  streamed: LayerTimes;
  /** What bounds the step: the larger of transfer and GPU work, and within GPU work the larger part. */
  bound: 'transfer' | 'compute' | 'recompute';
  h2dBytes: number;
  d2hBytes: number;
}

/**
 * A quantised layer (resident or streamed) is dequantised into an fp16 slot once per step before
 * its GEMMs read the slot: its bytes read and the slot's written at the HBM rate. 0 for fp16.
 */
function dequantiseSeconds(mp: ModelProfile, hw: HardwareProfile): number {
  return mp.weightDtype === 'fp16' ? 0 : (mp.layerBytes + mp.slotLayerBytes) / hw.hbmBytesPerSecond;
}

function cacheBytesPerToken(mp: ModelProfile, a: number): number {
  return (1 - a) * mp.kvBytesPerToken + a * mp.actBytesPerToken;
}

/** Cached tokens of a step in the host tier: what the GPU tier (filled first) does not hold. */
export function hostTierTokens(layout: GpuLayout, tokens: number): number {
  return Math.max(0, tokens - (layout.gpuKvTokens ?? 0));
}

function layerTimes(
  mp: ModelProfile,
  hw: HardwareProfile,
  s: StepInput,
  streamed: boolean,
  miniBatches: number,
  hostShare: number,
): LayerTimes & { h2d: number; d2h: number } {
  const a = s.actFraction;
  const b = s.batch;
  const N = b * s.contextTokens;
  const nHost = N * hostShare;
  const perTok = cacheBytesPerToken(mp, a);
  const h2d = (streamed ? mp.layerBytes : 0) + nHost * perTok;
  const d2h = b * hostShare * perTok;
  const transferSeconds = h2d / hw.h2dBytesPerSecond + d2h / hw.d2hBytesPerSecond;
  const gemm =
    Math.max(
      (mp.layerFlopsPerToken * b) / hw.gemmFlops,
      (miniBatches * mp.slotLayerBytes) / (hw.hbmBytesPerSecond * GEMM_WEIGHT_READ_EFFICIENCY),
    ) + dequantiseSeconds(mp, hw);
  const attention = Math.max(
    (mp.attentionFlopsPerPair * N) / hw.gemmFlops,
    (N * mp.kvBytesPerToken) / (hw.hbmBytesPerSecond * ATTENTION_HBM_EFFICIENCY),
  );
  const computeSeconds = gemm + attention;
  const recomputeSeconds = (a * nHost * mp.recomputeFlopsPerToken) / hw.gemmFlops;
  return {
    transferSeconds,
    computeSeconds,
    recomputeSeconds,
    seconds: overlapped(transferSeconds, computeSeconds + recomputeSeconds, hw.overlapSharpness),
    h2d,
    d2h,
  };
}

function checkStep(s: StepInput): void {
  if (!(s.actFraction >= 0 && s.actFraction <= 1)) throw new PlanError(`ACT fraction must be in [0, 1], got ${s.actFraction}`);
  if (!(s.batch > 0 && Number.isFinite(s.batch))) throw new PlanError(`batch must be positive, got ${s.batch}`);
  if (!(s.contextTokens >= 0 && Number.isFinite(s.contextTokens)))
    throw new PlanError(`context must be ≥ 0 tokens, got ${s.contextTokens}`);
}

/** Predicted decode step (one new token for each of `batch` sequences). */
export function decodeStepCost(mp: ModelProfile, hw: HardwareProfile, layout: GpuLayout, s: StepInput): StepCost {
  checkStep(s);
  const N = s.batch * s.contextTokens;
  // Only host-tier tokens pass through the staging buffers that bound a mini-batch.
  const miniBatches = Math.max(1, Math.min(Math.ceil(s.batch), Math.ceil(hostTierTokens(layout, N) / Math.max(1, layout.miniBatchTokens))));
  const hostShare = N > 0 ? hostTierTokens(layout, N) / N : 1;
  const res = layerTimes(mp, hw, s, false, miniBatches, hostShare);
  const str = layerTimes(mp, hw, s, true, miniBatches, hostShare);
  const nRes = layout.residentLayers;
  const nStr = mp.numLayers - nRes;
  const headSeconds = Math.max((mp.headFlopsPerToken * s.batch) / hw.gemmFlops, mp.lmHeadBytes / hw.hbmBytesPerSecond);
  const sum = (f: (t: LayerTimes) => number) => nRes * f(res) + nStr * f(str);
  const transferSeconds = sum((t) => t.transferSeconds);
  const computeSeconds = sum((t) => t.computeSeconds);
  const recomputeSeconds = sum((t) => t.recomputeSeconds);
  const idleSeconds = sum((t) => Math.max(0, t.transferSeconds - t.computeSeconds - t.recomputeSeconds));
  const stepSeconds = sum((t) => t.seconds) + headSeconds + s.batch * HOST_SECONDS_PER_SEQUENCE;
  const gpu = computeSeconds + recomputeSeconds;
  const bound = transferSeconds > gpu ? 'transfer' : recomputeSeconds > computeSeconds ? 'recompute' : 'compute';
  return {
    stepSeconds,
    transferSeconds,
    computeSeconds,
    recomputeSeconds,
    idleSeconds,
    headSeconds,
    miniBatches,
    resident: strip(res),
    streamed: strip(str),
    bound,
    h2dBytes: nRes * res.h2d + nStr * str.h2d,
    d2hBytes: nRes * res.d2h + nStr * str.d2h,
  };
}

function strip(t: LayerTimes): LayerTimes {
  return { transferSeconds: t.transferSeconds, computeSeconds: t.computeSeconds, recomputeSeconds: t.recomputeSeconds, seconds: t.seconds };
}

/**
 * Predicted prefill of `batch` prompts of `promptTokens`: every layer computes the prompt (GEMMs and
 * causal attention, 2·qDim·P² FLOPs per sequence) while streamed layers load, and writes each token's
 * cache back as KV or ACT.
 */
export function prefillSeconds(
  mp: ModelProfile,
  hw: HardwareProfile,
  layout: GpuLayout,
  s: { actFraction: number; batch: number; promptTokens: number },
): number {
  const T = s.batch * s.promptTokens;
  const perTok = cacheBytesPerToken(mp, s.actFraction);
  const chunks = Math.max(1, Math.ceil(T / Math.max(1, layout.miniBatchTokens)));
  const gemm =
    Math.max((mp.layerFlopsPerToken * T) / hw.gemmFlops, (chunks * mp.slotLayerBytes) / hw.hbmBytesPerSecond) + dequantiseSeconds(mp, hw);
  const attention = (mp.attentionFlopsPerPair * s.batch * s.promptTokens * s.promptTokens) / 2 / hw.gemmFlops;
  const compute = (gemm + attention) / PREFILL_EFFICIENCY;
  const writeBack = (hostTierTokens(layout, T) * perTok) / hw.d2hBytesPerSecond;
  const resident = overlapped(writeBack, compute, hw.overlapSharpness);
  const streamed = overlapped(mp.layerBytes / hw.h2dBytesPerSecond + writeBack, compute, hw.overlapSharpness);
  const head = Math.max((mp.headFlopsPerToken * s.batch) / hw.gemmFlops, mp.lmHeadBytes / hw.hbmBytesPerSecond);
  return layout.residentLayers * resident + (mp.numLayers - layout.residentLayers) * streamed + head;
}

export interface WorkloadShape {
  promptTokens: number;
  genTokens: number;
}

export interface Prediction {
  step: StepCost;
  /** Decode step time at the mean context (prompt + gen/2). */
  stepSeconds: number;
  prefillSeconds: number;
  /** Generated tokens per second over prefill + generation: batch·gen / (prefill + gen·step). */
  tokensPerSecond: number;
  /** batch / step. */
  decodeTokensPerSecond: number;
}

/** Predicts throughput for a batch of requests of one shape. */
export function predict(
  mp: ModelProfile,
  hw: HardwareProfile,
  layout: GpuLayout,
  actFraction: number,
  batch: number,
  w: WorkloadShape,
): Prediction {
  const step = decodeStepCost(mp, hw, layout, { actFraction, batch, contextTokens: w.promptTokens + w.genTokens / 2 });
  const pre = prefillSeconds(mp, hw, layout, { actFraction, batch, promptTokens: w.promptTokens });
  const total = pre + w.genTokens * step.stepSeconds;
  return {
    step,
    stepSeconds: step.stepSeconds,
    prefillSeconds: pre,
    tokensPerSecond: (batch * w.genTokens) / total,
    decodeTokensPerSecond: batch / step.stepSeconds,
  };
}

export function fmtGiB(bytes: number): string {
  return `${(bytes / GiB).toFixed(1)} GiB`;
}
