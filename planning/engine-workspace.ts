// What the CUDA engine allocates in GPU memory besides resident weights and the GPU cache tier:
// its layer slots and the step workspace. The planner lays out a GPU budget with these figures, so
// they follow the engine's own sizing (native/src/cuda/engine.cu: PlaceLayers for the slots,
// SizeWorkspace for the buffers; keep the two in step). Buffers only grow there (Ensure), so a run
// needs the largest of its steps: the prefill (most rows) or the last decode step (most cache).
// Pure arithmetic; docs/planning.md, "The engine's workspace", derives it.
import type { ModelProfile } from './model-profile.js';

/** Layer slots the engine streams weights through (kSlots: load, in use, next). */
export const ENGINE_LAYER_SLOTS = 3;
/** Staging sets for a mini-batch's cache and inputs (kSets: load, compute, store). */
const ENGINE_STAGING_SETS = 3;
/** Rows of the FFN scratch (kFfnChunkRows): a large prefill runs its FFN in chunks of this many rows. */
const FFN_CHUNK_ROWS = 8192;
/** Sequences with at least this many new tokens use prompt attention (kGemmAttentionMinTokens) instead of the paged kernel. */
const GEMM_ATTENTION_MIN_TOKENS = 17;
/**
 * Head dims the engine's fused prompt attention is built for (PrefillAttentionSupports): it reads K/V
 * from the pages and needs no score buffers. Other head dims run it as GEMMs over gathered K/V and
 * fp32 scores.
 */
const FUSED_PREFILL_HEAD_DIMS: readonly number[] = [64, 128];

/**
 * GPU bytes of the layer slots. fp16: three layer-sized slots when any layer streams, none when all
 * are resident (a resident layer is its own slot). Quantised weights are dequantised into fp16
 * slots, resident layers too, so three fp16 slots always, plus three staging areas of the quantised
 * bytes when layers stream.
 */
export function engineLayerBufferBytes(mp: ModelProfile, streams: boolean): number {
  if (mp.weightDtype === 'fp16') return streams ? ENGINE_LAYER_SLOTS * mp.layerBytes : 0;
  return ENGINE_LAYER_SLOTS * mp.slotLayerBytes + (streams ? ENGINE_LAYER_SLOTS * mp.layerBytes : 0);
}

/** The shape of a run the workspace must hold: its batch, prompts and cache, split into mini-batches. */
export interface WorkspaceShape {
  /** Sequences in a step. */
  batch: number;
  /** Prompt tokens of a sequence; the prefill step computes batch × promptTokens rows. */
  promptTokens: number;
  /** Tokens a sequence holds at its last step (prompt + generated). */
  seqTokens: number;
  /** Share of the host-tier cache held as ACT (staged as ACT rows and rebuilt into KV pages). */
  actFraction: number;
  blockTokens: number;
  /**
   * Staged tokens (new + host-tier cached) per mini-batch: the engine core packs each step's
   * sequences into mini-batches of at most this many (a longer sequence is one of its own).
   */
  miniBatchTokens: number;
  /**
   * New tokens a step computes at most (the server's --max-step-tokens: its scheduler splits larger
   * steps; one prompt longer than this runs alone). Absent: the prefill step holds batch × promptTokens.
   */
  stepTokens?: number;
  /**
   * The longest single prompt a step may hold when it is longer than `promptTokens` (a server's
   * window less one): reserved as a step of its own, its rows and its score buffers.
   */
  longestPromptTokens?: number;
}

/** Sequences per mini-batch and their rows, pages and ACT slots, for a step whose sequences stage `perSeq` tokens. */
function miniBatchOf(s: WorkspaceShape, perSeq: number, newPerSeq: number) {
  const seqs = Math.max(1, Math.min(s.batch, Math.floor(s.miniBatchTokens / Math.max(1, perSeq))));
  const pages = seqs * Math.ceil(perSeq / s.blockTokens);
  return { seqs, rows: seqs * newPerSeq, pages, actSlots: Math.ceil(s.actFraction * pages) };
}

/**
 * Rows (new tokens) of the largest step the workspace holds: the prefill's (under a step cap, up to
 * the cap of shorter prompts, or one longest prompt) or a decode step's, one row per sequence. The
 * engine keeps every row's fp32 hidden state for the whole step, so a server that keeps its steps
 * within this many new tokens stays inside the planned workspace (PlanFile.maxStepTokens).
 */
export function workspaceStepRows(s: Pick<WorkspaceShape, 'batch' | 'promptTokens' | 'stepTokens' | 'longestPromptTokens'>): number {
  const prefill = s.stepTokens ? Math.min(s.batch * s.promptTokens, Math.max(s.stepTokens, s.promptTokens)) : s.batch * s.promptTokens;
  return Math.max(prefill, s.longestPromptTokens ?? 0, s.batch);
}

/**
 * Bytes of the engine's step workspace for a run of this shape: the fp32 hidden states of every row
 * of the largest step, per mini-batch the staged inputs, QKV, attention output, FFN scratch, the
 * staged cache pages and ACT rows (three sets each) and the K/V rebuilt from ACT, the prefill's
 * score buffers (only for head dims without the fused prompt attention), and the logits of the batch. Host-tier cache is counted for every cached token
 * (the GPU tier, read in place, needs no staging): an upper bound when part of it is in HBM.
 */
export function engineWorkspaceBytes(mp: ModelProfile, s: WorkspaceShape): number {
  const e = mp.elementBytes;
  const h = mp.hiddenSize;
  // Prompts in the largest prefill step: all of the batch, or as many as the step cap allows (at least one).
  const prefillSeqs = s.stepTokens ? Math.max(1, Math.min(s.batch, Math.floor(s.stepTokens / Math.max(1, s.promptTokens)))) : s.batch;
  const prefill = miniBatchOf({ ...s, batch: prefillSeqs }, s.promptTokens, s.promptTokens);
  const decode = miniBatchOf(s, s.seqTokens, 1);
  // One longest prompt alone (a step of its own); the shape's own prompts when none is longer.
  const longest = Math.max(s.promptTokens, s.longestPromptTokens ?? 0);
  const alone = miniBatchOf({ ...s, batch: 1 }, longest, longest);
  const rows = Math.max(prefill.rows, decode.rows, alone.rows);
  const pages = Math.max(prefill.pages, decode.pages, alone.pages);
  const actSlots = Math.max(prefill.actSlots, decode.actSlots, alone.actSlots);
  const hidden = workspaceStepRows(s) * h * 4;
  const perRow =
    ENGINE_STAGING_SETS * h * e + // staged inputs (xset)
    (mp.qDim + 2 * mp.kvDim) * e + // qkv
    mp.qDim * e + // attention output
    h * e; // x2
  const ffnScratch = Math.min(rows, FFN_CHUNK_ROWS) * mp.ffnSize * (mp.arch === 'opt' ? 1 : 3) * e;
  const gemmAttention = longest >= GEMM_ATTENTION_MIN_TOKENS && !FUSED_PREFILL_HEAD_DIMS.includes(mp.qDim / mp.numHeads);
  const scores = gemmAttention ? mp.numHeads * longest * longest * (4 + e) + 2 * longest * mp.kvDim * e : 0;
  const staged =
    ENGINE_STAGING_SETS * pages * s.blockTokens * 2 * mp.kvDim * e + // KV pages (loaded or rebuilt)
    ENGINE_STAGING_SETS * actSlots * s.blockTokens * h * e + // ACT rows
    actSlots * s.blockTokens * 2 * mp.kvDim * e; // K/V rebuilt from ACT
  const head = s.batch * (h * 4 + h * e + mp.vocabSize * 4);
  return hidden + rows * perRow + ffnScratch + scores + staged + head;
}
