#include "cuda/batch_layout.h"

#include "cuda/page_tier.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace hs::cuda {
namespace {

struct Load {
  int host = 0;
  int seq = 0;    // local
  int block = 0;  // index in the sequence's block table
  int valid = 0;  // cached tokens in the block
};

// Sorted by host id, then merged into runs of consecutive ids mapped to consecutive slots.
std::vector<CopyRun> MergeRuns(std::vector<Load>& loads, int dst_base) {
  std::sort(loads.begin(), loads.end(), [](const Load& a, const Load& b) { return a.host < b.host; });
  std::vector<CopyRun> runs;
  for (size_t i = 0; i < loads.size(); ++i) {
    const int dst = dst_base + static_cast<int>(i);
    if (!runs.empty() && runs.back().host_first + runs.back().count == loads[i].host &&
        runs.back().dst_first + runs.back().count == dst) {
      ++runs.back().count;
    } else {
      runs.push_back({loads[i].host, 1, dst});
    }
  }
  return runs;
}

}  // namespace

std::vector<std::vector<int>> MiniBatchesOf(const BatchPlan& plan) {
  if (!plan.mini_batches.empty()) return plan.mini_batches;
  std::vector<int> all(plan.seqs.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
  return {all};
}

MiniBatchLayout BuildLayout(const BatchPlan& plan, const std::vector<int>& seq_ids, const CacheGeometry& geom,
                            int kv_blocks, int act_blocks, int gpu_kv_blocks) {
  const int bt = geom.block_tokens;
  MiniBatchLayout L;
  // Row order: sequences with few new tokens first (paged kernel), then prefill-sized ones.
  L.seqs = seq_ids;
  std::stable_partition(L.seqs.begin(), L.seqs.end(),
                        [&](int i) { return plan.seqs.at(i).num_new < kGemmAttentionMinTokens; });
  const int n = static_cast<int>(L.seqs.size());
  L.seq_pt_off.resize(n);
  L.seq_row0.resize(n);
  L.seq_new.resize(n);
  L.seq_start.resize(n);
  std::vector<Load> kv_loads, act_loads;
  std::vector<std::pair<int, int>> fresh;  // (seq, block)
  for (int s = 0; s < n; ++s) {
    const SeqPlan& sp = plan.seqs.at(L.seqs[s]);
    if (sp.num_new <= 0 || sp.start_pos < 0 || !sp.tokens)
      throw std::invalid_argument("cuda backend: sequence " + std::to_string(sp.id) + " has no new tokens");
    const int ctx = sp.start_pos + sp.num_new;
    const int need = (ctx + bt - 1) / bt;
    if (sp.num_blocks < need || !sp.blocks)
      throw std::invalid_argument("cuda backend: block table of sequence " + std::to_string(sp.id) + " covers " +
                                  std::to_string(sp.num_blocks) + " blocks, needs " + std::to_string(need));
    L.seq_pt_off[s] = static_cast<int>(L.page_table.size());
    L.seq_new[s] = sp.num_new;
    L.seq_start[s] = sp.start_pos;
    for (int b = 0; b < need; ++b) {
      const BlockRef br = sp.blocks[b];
      const bool device = br.tier == Tier::Device;
      if (device && br.kind != CacheKind::KV) throw std::invalid_argument("cuda backend: a GPU-tier block must be KV");
      const int limit = device ? gpu_kv_blocks : br.kind == CacheKind::KV ? kv_blocks : act_blocks;
      if (br.index < 0 || br.index >= limit)
        throw std::invalid_argument("cuda backend: block id " + std::to_string(br.index) + " out of range");
      const int cached = std::clamp(sp.start_pos - b * bt, 0, bt);
      if (device) {  // read and written in place
        L.page_table.push_back(kDevicePage + br.index);
        L.gpu_tier_tokens += cached;
        continue;
      }
      L.page_table.push_back(-1);
      if (cached == 0)
        fresh.push_back({s, b});
      else if (br.kind == CacheKind::KV)
        kv_loads.push_back({br.index, s, b, cached});
      else
        act_loads.push_back({br.index, s, b, cached});
    }
  }
  // Pages: loaded KV blocks, then recomputed ACT blocks, then fresh blocks.
  L.kv_runs = MergeRuns(kv_loads, 0);
  L.kv_load_blocks = static_cast<int>(kv_loads.size());
  for (size_t i = 0; i < kv_loads.size(); ++i)
    L.page_table[L.seq_pt_off[kv_loads[i].seq] + kv_loads[i].block] = static_cast<int>(i);
  L.act_runs = MergeRuns(act_loads, 0);
  L.act_slots = static_cast<int>(act_loads.size());
  for (size_t i = 0; i < act_loads.size(); ++i) {
    const int page = L.kv_load_blocks + static_cast<int>(i);
    L.page_table[L.seq_pt_off[act_loads[i].seq] + act_loads[i].block] = page;
    L.act_slot_page.push_back(page);
    L.act_slot_pos0.push_back(act_loads[i].block * bt);
    L.act_slot_valid.push_back(act_loads[i].valid);
    L.recomputed_tokens += act_loads[i].valid;
  }
  int next = L.kv_load_blocks + L.act_slots;
  for (auto [s, b] : fresh) L.page_table[L.seq_pt_off[s] + b] = next++;
  L.pages = next;
  // Rows and stores.
  for (int s = 0; s < n; ++s) {
    const SeqPlan& sp = plan.seqs.at(L.seqs[s]);
    L.seq_row0[s] = L.rows;
    if (sp.num_new < kGemmAttentionMinTokens) L.paged_rows = L.rows + sp.num_new;
    for (int t = 0; t < sp.num_new; ++t) {
      const int p = sp.start_pos + t, b = p / bt, sl = p % bt;
      const int page = L.page_table[L.seq_pt_off[s] + b];
      const int row = L.rows++;
      L.tokens.push_back(sp.tokens[t]);
      L.pos.push_back(p);
      L.page.push_back(page);
      L.slot.push_back(sl);
      L.row_seq.push_back(s);
      const BlockRef br = sp.blocks[b];
      if (br.tier == Tier::Device) continue;  // qkv_post wrote the row into the block itself
      if (br.kind == CacheKind::KV) {
        const int64_t src = page * geom.page_elems() + int64_t{sl} * geom.kv_dim;
        const int64_t dst = br.index * geom.page_elems() + int64_t{sl} * geom.kv_dim;
        const int64_t v_off = int64_t{bt} * geom.kv_dim;
        L.kv_store_src.push_back(src);
        L.kv_store_dst.push_back(dst);
        L.kv_store_src.push_back(src + v_off);
        L.kv_store_dst.push_back(dst + v_off);
      } else {
        L.act_store_src.push_back(int64_t{row} * geom.hidden);
        L.act_store_dst.push_back(br.index * geom.act_block_elems() + int64_t{sl} * geom.hidden);
      }
    }
    L.last_row.push_back(L.rows - 1);
    L.last_plan_index.push_back(L.seqs[s]);
  }
  return L;
}

}  // namespace hs::cuda
