// The shared secret of a pipeline's processes (HYBRIDSERVE_PIPELINE_TOKEN): every rank's hello at
// the rendezvous and every data connection carries it, and a peer without it is refused before
// anything else it says counts. Empty: not checked (a pipeline started by hand on one host).
#pragma once
#include <cstdint>
#include <string>

namespace hs::pipeline {

constexpr size_t kMaxTokenBytes = 256;

// Compares in time that depends on the lengths only, so that a peer cannot find the token byte by byte.
inline bool SameToken(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  uint8_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<uint8_t>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace hs::pipeline
