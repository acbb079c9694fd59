// Mini-batches of a step (the zig-zag schedule's unit, core/backend.h BatchPlan::mini_batches): a
// backend stages one mini-batch's host-tier cache and activations at a time, so the GPU memory it
// needs for them follows the largest mini-batch, not the step. The planner sizes that memory for
// mini-batches of at most `miniBatchTokens` staged tokens (planning/cost-model.ts gpuLayout /
// planning/placement.ts tieredLayout); the engine core splits each step to match.
#pragma once
#include <vector>

#include "core/backend.h"

namespace hs {

// Tokens a sequence's step stages: its new tokens plus its cached tokens in host-tier blocks
// (GPU-tier blocks are read in place).
int StagedTokens(const SeqPlan& s, int block_tokens);

// Sequences in plan order, a new mini-batch whenever the next one would take the current one past
// `max_tokens` (a sequence larger than that alone is a mini-batch of its own). Empty (one
// mini-batch of all) when max_tokens <= 0 or everything fits in one.
std::vector<std::vector<int>> PackMiniBatches(const BatchPlan& plan, int block_tokens, int max_tokens);

}  // namespace hs
