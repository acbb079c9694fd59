#include "core/mini_batches.h"

#include <algorithm>

namespace hs {

int StagedTokens(const SeqPlan& s, int block_tokens) {
  int host_cached = 0;
  for (int b = 0; b < s.num_blocks && b * block_tokens < s.start_pos; ++b)
    if (s.blocks[b].tier == Tier::Host) host_cached += std::min(block_tokens, s.start_pos - b * block_tokens);
  return s.num_new + host_cached;
}

std::vector<std::vector<int>> PackMiniBatches(const BatchPlan& plan, int block_tokens, int max_tokens) {
  std::vector<std::vector<int>> out;
  if (max_tokens <= 0 || plan.seqs.empty()) return out;
  long long in_current = 0;
  for (int i = 0; i < static_cast<int>(plan.seqs.size()); ++i) {
    const int t = StagedTokens(plan.seqs[i], block_tokens);
    if (out.empty() || (!out.back().empty() && in_current + t > max_tokens)) {
      out.emplace_back();
      in_current = 0;
    }
    out.back().push_back(i);
    in_current += t;
  }
  if (out.size() == 1) out.clear();
  return out;
}

}  // namespace hs
