// How a model's decoder layers split into pipeline stages: contiguous ranges [first, last), one per
// stage, as even as possible (the first `num_layers % stages` stages take one layer more). Pure.
#pragma once
#include <stdexcept>
#include <string>
#include <vector>

namespace hs::pipeline {

struct LayerRange {
  int first = 0;
  int last = 0;  // exclusive
  int count() const { return last - first; }
};

// Throws std::invalid_argument unless 1 <= stages <= num_layers.
inline std::vector<LayerRange> SplitLayers(int num_layers, int stages) {
  if (stages < 1 || stages > num_layers)
    throw std::invalid_argument("stages must be in [1, numLayers = " + std::to_string(num_layers) + "], got " +
                                std::to_string(stages));
  std::vector<LayerRange> out(stages);
  const int base = num_layers / stages, extra = num_layers % stages;
  int at = 0;
  for (int s = 0; s < stages; ++s) {
    out[s].first = at;
    at += base + (s < extra ? 1 : 0);
    out[s].last = at;
  }
  return out;
}

}  // namespace hs::pipeline
