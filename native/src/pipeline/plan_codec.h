// The step plan as bytes, for the ranks of a pipeline in other processes: the leader owns the
// engine core and sends each step's BatchPlan (tokens, positions, block tables, mini-batches) to
// every other rank, which decodes it and runs its stage over the same plan. Pure.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/backend.h"

namespace hs::pipeline {

// A decoded plan and the storage its pointers refer to (heap-held: the pointers stay valid).
struct OwnedPlan {
  BatchPlan plan;
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<BlockRef>> blocks;
};

std::vector<uint8_t> EncodePlan(const BatchPlan& plan);
// Throws std::invalid_argument for bytes that are not a whole, consistent plan.
std::unique_ptr<OwnedPlan> DecodePlan(const uint8_t* data, size_t size);

}  // namespace hs::pipeline
