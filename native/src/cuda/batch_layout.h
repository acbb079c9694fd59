// Pure host-side layout of one mini-batch for a step: which rows (new tokens) it computes, which
// GPU page holds each of its blocks (a staging page, or the block itself when it is in the GPU tier), which host blocks
// to load (merged into runs of consecutive block ids, so one layer's cache for the mini-batch moves in few large
// copies), which ACT blocks to recompute, and where each new token's cache row goes in the host pools. The same layout
// serves every layer, because a block id addresses the same slot in every layer. No CUDA here.
#pragma once
#include <cstdint>
#include <vector>

#include "core/backend.h"

namespace hs::cuda {

struct CopyRun {
  int host_first = 0;  // first host block id
  int count = 0;       // consecutive blocks
  int dst_first = 0;   // first destination slot (page for KV, ACT staging slot for ACT)
};

struct CacheGeometry {
  int block_tokens = 16;
  int hidden = 0;
  int kv_dim = 0;
  int64_t page_elems() const { return int64_t{2} * block_tokens * kv_dim; }
  int64_t act_block_elems() const { return int64_t{block_tokens} * hidden; }
};

struct MiniBatchLayout {
  std::vector<int> seqs;  // indices into BatchPlan::seqs, in row order
  int rows = 0;           // new tokens
  int paged_rows = 0;     // rows [0, paged_rows) use the paged attention kernel; the rest GEMM attention
  // Per row.
  std::vector<int> tokens, pos, page, slot, row_seq;
  // Per sequence (mini-batch local).
  std::vector<int> seq_pt_off, seq_row0, seq_new, seq_start;
  std::vector<int> page_table;
  int pages = 0;                // staging pages (GPU-tier blocks need none)
  int64_t gpu_tier_tokens = 0;  // cached positions read in place from the GPU tier
  // Loads.
  std::vector<CopyRun> kv_runs, act_runs;
  int kv_load_blocks = 0;
  int act_slots = 0;
  std::vector<int> act_slot_page, act_slot_pos0, act_slot_valid;
  int64_t recomputed_tokens = 0;
  // Stores (offsets in fp16 elements): KV rows come from the pages, ACT rows from the normed input x.
  std::vector<int64_t> kv_store_src, kv_store_dst, act_store_src, act_store_dst;
  // Logits: last row of each sequence, and that sequence's index in the BatchPlan.
  std::vector<int> last_row, last_plan_index;
};

// Sequences with more new tokens than this use GEMM attention (prefill); others the paged kernel.
constexpr int kGemmAttentionMinTokens = 17;

// Builds the layout of mini-batch `seq_ids`. Throws std::invalid_argument for a plan whose block
// table does not cover its positions or whose block ids are out of range.
// Blocks of the GPU tier get page kDevicePage + index (qkv_post.cuh): no load, no store (new rows
// are written in place by the QKV post-processing), so only host-tier blocks cross PCIe.
MiniBatchLayout BuildLayout(const BatchPlan& plan, const std::vector<int>& seq_ids, const CacheGeometry& geom,
                            int kv_blocks, int act_blocks, int gpu_kv_blocks = 0);

// The mini-batches of a plan: plan.mini_batches, or one mini-batch of all sequences.
std::vector<std::vector<int>> MiniBatchesOf(const BatchPlan& plan);

}  // namespace hs::cuda
