#include "cuda/stream_timing.h"

#include "cuda/cuda_check.h"

namespace hs::cuda {
namespace {

// The two events, destroyed on every path (a failed check throws).
struct EventPair {
  cudaEvent_t start = nullptr, end = nullptr;
  EventPair() {
    HS_CUDA_CHECK(cudaEventCreate(&start));
    HS_CUDA_CHECK(cudaEventCreate(&end));
  }
  ~EventPair() {
    cudaEventDestroy(start);
    cudaEventDestroy(end);
  }
  EventPair(const EventPair&) = delete;
  EventPair& operator=(const EventPair&) = delete;
};

}  // namespace

double MeanMsOnStream(cudaStream_t stream, int reps, const std::function<void()>& op) {
  op();
  EventPair ev;
  HS_CUDA_CHECK(cudaEventRecord(ev.start, stream));
  for (int i = 0; i < reps; ++i) op();
  HS_CUDA_CHECK(cudaEventRecord(ev.end, stream));
  HS_CUDA_CHECK(cudaEventSynchronize(ev.end));
  float ms = 0;
  HS_CUDA_CHECK(cudaEventElapsedTime(&ms, ev.start, ev.end));
  return static_cast<double>(ms) / reps;
}

}  // namespace hs::cuda
