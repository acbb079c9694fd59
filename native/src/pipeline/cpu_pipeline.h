// The CPU pipeline: `stages` CpuBackend stages over one set of weights and pools (each stage reads
// and writes only its layers' regions), joined by a LoopbackTransport. For tests and for the design
// of the GPU pipeline; each stage gets its own thread pool of threads / stages threads.
#pragma once
#include <memory>

#include "core/backend.h"

namespace hs::pipeline {

// threads <= 0: hardware concurrency. Throws std::invalid_argument unless 1 <= stages <= numLayers.
std::unique_ptr<Backend> MakeCpuPipeline(const ModelConfig& cfg, const HostWeights& weights, CachePools& pools,
                                         int threads, int stages);

}  // namespace hs::pipeline
