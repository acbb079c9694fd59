// Page indices at or above kDevicePage name blocks of the GPU cache tier (page kDevicePage + i is
// device block i, read and written in place); below it, pages of the step's staging buffer (host-tier
// blocks streamed in, recomputed ACT blocks, fresh host blocks). One page table thus spans both
// tiers. Plain C++ so that the pure layout code (batch_layout.cc) and the kernels share it.
#pragma once

namespace hs::cuda {

constexpr int kDevicePage = 1 << 30;

}  // namespace hs::cuda
