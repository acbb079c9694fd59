// Prefill attention of every prompt sequence of a mini-batch in one launch, flash-attention style:
// K/V read straight from the paged cache (both tiers, through PageGeom::page_ptr), causal softmax
// computed online, no gathered K/V copies and no score buffer (the old path: gather_pages, two
// strided-batched GEMMs and causal_softmax per sequence, with [heads, n, ctx] fp32 scores).
//
// Design (prefill_attention.cu): one block of 4 warps per (64-query tile, head, sequence); each warp
// owns 16 query rows. Keys are walked in tiles of 64 rows; K and V tiles are double-buffered in
// shared memory with cp.async (the next tile's copy overlaps this tile's math). Per key tile a warp
// computes S = Q·Kᵀ (16 × 64, fp32) with mma.sync m16n8k16 (fp16 in, fp32 accumulate), applies the
// causal mask (query at new-row i of a sequence with `start` cached tokens has position start + i
// and sees keys 0..start+i), updates its rows' running max and sum, rescales O, and adds P·V with P
// rounded to fp16 straight from the S accumulators. O / sum is written as fp16 at the end. Key tiles
// past a warp's causal bound are skipped; only tiles that cross the diagonal are masked.
// Grid (query tiles, heads, sequences) with the query tile fastest and the last (longest) tile first:
// the blocks in flight together share one sequence-head's K/V in L2, and the short tiles close the
// grid. hd 128: 85 KiB of shared memory and ~204 registers a thread, two blocks (8 warps) per SM.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda/qkv_post.cuh"

namespace hs::cuda {

// The prompt sequences of one launch. Arrays are device arrays with one entry per sequence (they may
// point into one packed buffer); count and max_new are host values that size the grid.
struct PrefillSeqs {
  const int* row0 = nullptr;        // first mini-batch row of the sequence's new tokens (q and out)
  const int* n_new = nullptr;       // new tokens (rows row0 .. row0 + n_new - 1); 0 is allowed
  const int* start = nullptr;       // cached tokens before them: new token i has position start + i
  const int* pt_off = nullptr;      // offset of the sequence's page list in page_table
  const int* page_table = nullptr;  // page of each block of start + n_new keys, in block order
  int count = 0;                    // sequences (<= 65535)
  int max_new = 0;                  // >= every n_new
};

// Head dims the fused kernel is built for (64 and 128); for others keep the gather + GEMM path.
bool PrefillAttentionSupports(int head_dim);

// q: [rows, ldq], head h of row r at column h*head_dim (the Q part of the fused QKV output); out:
// [rows, ldo], same layout. GQA: query head h reads kv head h / (num_heads / num_kv_heads).
// Needs 16-byte-aligned q and page buffers, ldq and geom.kv_dim multiples of 8, out 4-byte aligned
// and ldo even (throws std::invalid_argument otherwise, or for an unsupported head_dim).
void LaunchPrefillAttention(const __half* q, int ldq, __half* out, int ldo, int num_heads, int num_kv_heads,
                            int head_dim, float scale, PrefillSeqs seqs, PageGeom geom, cudaStream_t stream);

}  // namespace hs::cuda
