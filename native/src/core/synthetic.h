// Deterministic, counter-based synthetic weights: element i of tensor `name` depends only on
// (seed, name, i), so any split of the work across threads yields the same values.
#pragma once
#include <cstdint>
#include <string>

namespace hs {

inline uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// The per-tensor key; element values are UniformAt(key, i).
inline uint64_t TensorKey(uint64_t seed, const std::string& name) {
  return splitmix64(seed ^ splitmix64(fnv1a64(name)));
}

// Uniform in [-1, 1) from 24 random bits (exactly representable in float).
inline float UniformAt(uint64_t key, uint64_t i) {
  const uint64_t r = splitmix64(key + i * 0xD1B54A32D192ED03ull);
  return (float)((double)(r >> 40) * (1.0 / 8388608.0) - 1.0);
}

// How a synthetic tensor is drawn: value = center + scale * U(-1, 1).
struct SyntheticLaw {
  float center = 0.f;
  float scale = 1.f;
};
// The law for a canonical tensor name with the given shape (see native/README.md).
SyntheticLaw SyntheticLawFor(const std::string& name, int64_t rows, int64_t cols);

}  // namespace hs
