// The CUDA backend's step layout (native/src/cuda/batch_layout.cc) is pure C++, so it is tested
// here on every machine, sanitizers included: which blocks load, merged into which copy runs,
// which GPU page each block gets, which ACT blocks are recomputed and where new rows are stored.
#include <stdexcept>
#include <vector>

#include "test.h"
#ifndef HS_WITH_CUDA
#include "cuda/batch_layout.cc"  // CPU builds have no hs_cuda library; CUDA builds link it from there
#else
#include "cuda/batch_layout.h"
#endif

namespace {

using hs::BatchPlan;
using hs::BlockRef;
using hs::CacheKind;
using hs::SeqPlan;
using hs::cuda::BuildLayout;
using hs::cuda::CacheGeometry;

SeqPlan Seq(int64_t id, const std::vector<int32_t>& toks, int start, const std::vector<BlockRef>& blocks) {
  SeqPlan s;
  s.id = id;
  s.tokens = toks.data();
  s.num_new = static_cast<int>(toks.size());
  s.start_pos = start;
  s.blocks = blocks.data();
  s.num_blocks = static_cast<int>(blocks.size());
  return s;
}

const CacheGeometry kGeom{16, 8, 4};  // block_tokens, hidden, kv_dim

HS_TEST(cuda_layout_runs_pages_and_stores) {
  const std::vector<int32_t> ta{7}, tb{9};
  const std::vector<BlockRef> ba{{CacheKind::KV, 3}, {CacheKind::KV, 4}};
  const std::vector<BlockRef> bb{{CacheKind::ACT, 0}, {CacheKind::KV, 5}, {CacheKind::ACT, 1}};
  BatchPlan plan;
  plan.seqs.push_back(Seq(1, ta, 20, ba));  // decode at position 20 (block 1, slot 4)
  plan.seqs.push_back(Seq(2, tb, 33, bb));  // decode at position 33 (block 2, slot 1)
  const auto L = BuildLayout(plan, {0, 1}, kGeom, 8, 8);
  HS_CHECK_EQ(L.rows, 2);
  HS_CHECK_EQ(L.paged_rows, 2);
  // KV blocks 3, 4, 5 hold cached tokens: one run of three blocks into pages 0..2.
  HS_CHECK_EQ(L.kv_runs.size(), 1u);
  HS_CHECK_EQ(L.kv_runs[0].host_first, 3);
  HS_CHECK_EQ(L.kv_runs[0].count, 3);
  HS_CHECK_EQ(L.kv_load_blocks, 3);
  // ACT blocks 0 (16 cached) and 1 (1 cached: position 32) are recomputed into pages 3, 4.
  HS_CHECK_EQ(L.act_runs.size(), 1u);
  HS_CHECK_EQ(L.act_runs[0].count, 2);
  HS_CHECK_EQ(L.act_slots, 2);
  HS_CHECK_EQ(L.act_slot_valid[0], 16);
  HS_CHECK_EQ(L.act_slot_valid[1], 1);
  HS_CHECK_EQ(L.act_slot_pos0[1], 32);
  HS_CHECK_EQ(L.recomputed_tokens, 17);
  HS_CHECK_EQ(L.pages, 5);
  const std::vector<int> table{0, 1, 3, 2, 4};
  HS_CHECK(L.page_table == table);
  // Row 0 (seq 1) stores K and V into KV block 4, slot 4; row 1 (seq 2) its ACT into ACT block 1, slot 1.
  HS_CHECK_EQ(L.kv_store_dst.size(), 2u);
  HS_CHECK_EQ(L.kv_store_dst[0], 4 * kGeom.page_elems() + 4 * kGeom.kv_dim);
  HS_CHECK_EQ(L.kv_store_dst[1], 4 * kGeom.page_elems() + 16 * kGeom.kv_dim + 4 * kGeom.kv_dim);
  HS_CHECK_EQ(L.kv_store_src[0], 1 * kGeom.page_elems() + 4 * kGeom.kv_dim);
  HS_CHECK_EQ(L.act_store_dst.size(), 1u);
  HS_CHECK_EQ(L.act_store_dst[0], 1 * kGeom.act_block_elems() + 1 * kGeom.hidden);
  HS_CHECK_EQ(L.act_store_src[0], 1 * kGeom.hidden);
  HS_CHECK_EQ(L.last_row[1], 1);
}

HS_TEST(cuda_layout_prefill_rows_after_decode_rows) {
  std::vector<int32_t> prompt(40, 5), one{1};
  const std::vector<BlockRef> bp{{CacheKind::ACT, 0}, {CacheKind::ACT, 1}, {CacheKind::KV, 0}};
  const std::vector<BlockRef> bd{{CacheKind::KV, 1}};
  BatchPlan plan;
  plan.seqs.push_back(Seq(1, prompt, 0, bp));
  plan.seqs.push_back(Seq(2, one, 3, bd));
  const auto L = BuildLayout(plan, {0, 1}, kGeom, 4, 4);
  HS_CHECK_EQ(L.rows, 41);
  HS_CHECK_EQ(L.paged_rows, 1);  // the decode row comes first, the prompt uses GEMM attention
  HS_CHECK_EQ(L.seqs[0], 1);
  HS_CHECK_EQ(L.act_slots, 0);                     // nothing cached yet in the prompt's blocks
  HS_CHECK_EQ(L.kv_load_blocks, 1);                // only the decode sequence's block
  HS_CHECK_EQ(L.act_store_src.size(), 32u);        // positions 0..31 are in ACT blocks
  HS_CHECK_EQ(L.kv_store_src.size(), 2u * 8 + 2);  // positions 32..39 in a KV block, plus the decode token
  HS_CHECK_EQ(L.last_plan_index[1], 0);
  HS_CHECK_EQ(L.last_row[1], 40);
}

HS_TEST(cuda_layout_rejects_bad_tables) {
  std::vector<int32_t> toks(20, 1);
  const std::vector<BlockRef> short_table{{CacheKind::KV, 0}};
  const std::vector<BlockRef> bad_id{{CacheKind::KV, 0}, {CacheKind::ACT, 9}};
  BatchPlan a, b;
  a.seqs.push_back(Seq(1, toks, 0, short_table));
  b.seqs.push_back(Seq(1, toks, 0, bad_id));
  HS_CHECK_THROWS(BuildLayout(a, {0}, kGeom, 4, 4), std::invalid_argument);
  HS_CHECK_THROWS(BuildLayout(b, {0}, kGeom, 4, 4), std::invalid_argument);
  HS_CHECK_EQ(hs::cuda::MiniBatchesOf(a).size(), 1u);
}

}  // namespace

// A block table spanning tiers: GPU-tier blocks are read and written in place (page kDevicePage +
// id), so they add no copy runs, no staging pages and no stores; host blocks behave as before.
HS_TEST(cuda_layout_gpu_tier_blocks_are_not_streamed) {
  using hs::Tier;
  const std::vector<int32_t> ta{7};
  const std::vector<BlockRef> ba{
      {CacheKind::KV, 2, Tier::Device}, {CacheKind::KV, 6, Tier::Host}, {CacheKind::KV, 0, Tier::Device}};
  BatchPlan plan;
  plan.seqs.push_back(Seq(1, ta, 40, ba));  // decode at position 40: block 2 (a device block), slot 8
  const auto L = BuildLayout(plan, {0}, kGeom, 8, 8, 3);
  HS_CHECK_EQ(L.kv_runs.size(), 1u);  // only host block 6 loads
  HS_CHECK_EQ(L.kv_runs[0].host_first, 6);
  HS_CHECK_EQ(L.kv_load_blocks, 1);
  HS_CHECK_EQ(L.pages, 1);
  HS_CHECK_EQ(L.gpu_tier_tokens, 16 + 8);
  const std::vector<int> table{hs::cuda::kDevicePage + 2, 0, hs::cuda::kDevicePage + 0};
  HS_CHECK(L.page_table == table);
  HS_CHECK_EQ(L.page[0], hs::cuda::kDevicePage + 0);  // the new row goes straight into device block 0
  HS_CHECK(L.kv_store_src.empty() && L.act_store_src.empty());
  // A device block id beyond the tier, or an ACT block in the device tier, is refused.
  const std::vector<BlockRef> bad{{CacheKind::KV, 3, Tier::Device}};
  BatchPlan p2;
  p2.seqs.push_back(Seq(2, ta, 0, bad));
  HS_CHECK_THROWS(BuildLayout(p2, {0}, kGeom, 8, 8, 3), std::invalid_argument);
  const std::vector<BlockRef> act_dev{{CacheKind::ACT, 0, Tier::Device}};
  BatchPlan p3;
  p3.seqs.push_back(Seq(3, ta, 0, act_dev));
  HS_CHECK_THROWS(BuildLayout(p3, {0}, kGeom, 8, 8, 3), std::invalid_argument);
}
