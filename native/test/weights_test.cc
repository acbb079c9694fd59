// Canonical tensor list, synthetic determinism, and safetensors-style file loading.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/half.h"
#include "core/weights.h"
#include "test.h"
#include "test_util.h"

using namespace hs;

HS_TEST(required_tensors_per_arch) {
  const auto opt = RequiredTensors(test::TinyOpt());
  const auto llama = RequiredTensors(test::TinyLlama());
  auto find = [](const std::vector<TensorSpec>& v, const std::string& n) -> const TensorSpec* {
    for (const auto& s : v)
      if (s.name == n) return &s;
    return nullptr;
  };
  HS_CHECK(find(opt, "embed_positions.weight") && find(opt, "embed_positions.weight")->shape[0] == 256 + 2);
  HS_CHECK(find(opt, "layers.1.fc2.bias") != nullptr);
  HS_CHECK(find(opt, "lm_head.weight") && find(opt, "lm_head.weight")->optional);
  HS_CHECK(find(llama, "embed_positions.weight") == nullptr);
  HS_CHECK(find(llama, "layers.0.q_proj.bias") == nullptr);
  HS_CHECK(find(llama, "lm_head.weight") && !find(llama, "lm_head.weight")->optional);
  const TensorSpec* k = find(llama, "layers.1.k_proj.weight");
  HS_CHECK(k && k->shape == std::vector<int64_t>({2 * 8, 32}));  // GQA: kv_dim rows
  HS_CHECK_EQ(opt.size(), (size_t)(5 + 2 * 16));
  HS_CHECK_EQ(llama.size(), (size_t)(3 + 2 * 9));
}

HS_TEST(synthetic_weights_are_deterministic_per_seed) {
  const auto cfg = test::TinyLlama();
  WeightSource a{true, 1, {}}, b{true, 2, {}};
  HostWeights w1(cfg, a, DType::F32), w2(cfg, a, DType::F32), w3(cfg, b, DType::F32);
  const auto& t1 = w1.get("layers.0.q_proj.weight");
  const auto& t2 = w2.get("layers.0.q_proj.weight");
  const auto& t3 = w3.get("layers.0.q_proj.weight");
  HS_CHECK(std::memcmp(t1.data, t2.data, t1.bytes) == 0);
  HS_CHECK(std::memcmp(t1.data, t3.data, t1.bytes) != 0);
  // Norm weights near 1, matrices centred and bounded by sqrt(3 / in).
  const float* nw = w1.get("final_norm.weight").f32();
  for (int i = 0; i < cfg.hidden_size; ++i) HS_CHECK(nw[i] > 0.85f && nw[i] < 1.15f);
  double sum = 0;
  for (size_t i = 0; i < t1.numel(); ++i) {
    HS_CHECK(std::fabs(t1.f32()[i]) <= std::sqrt(3.0 / cfg.hidden_size) + 1e-6);
    sum += t1.f32()[i];
  }
  HS_CHECK(std::fabs(sum / t1.numel()) < 0.05);
  // F16 store holds the same values rounded.
  HostWeights h(cfg, a, DType::F16);
  const auto& t16 = h.get("layers.0.q_proj.weight");
  for (size_t i = 0; i < t1.numel(); i += 7) HS_CHECK_NEAR(f16_to_f32(t16.f16()[i]), t1.f32()[i], 1e-3);
  HS_CHECK(w1.find("lm_head.weight") != nullptr);  // untied Llama gets its own head
}

namespace {
// Writes every tensor of `w` (F32) to one file as `dtype`, returning the refs.
std::vector<TensorRef> WriteFile(const std::string& path, const ModelConfig& cfg, const HostWeights& w, DType dtype) {
  std::vector<TensorRef> refs;
  FILE* f = std::fopen(path.c_str(), "wb");
  uint64_t off = 8;  // leading junk, like a safetensors header
  std::fwrite("HEADER!!", 1, 8, f);
  for (const auto& spec : RequiredTensors(cfg)) {
    const HostTensor* t = w.find(spec.name);
    if (!t) continue;
    std::vector<uint16_t> half(t->numel());
    const void* data = t->data;
    size_t bytes = t->bytes;
    if (dtype != DType::F32) {
      for (size_t i = 0; i < half.size(); ++i) {
        uint32_t bits;
        std::memcpy(&bits, &t->f32()[i], 4);
        half[i] = dtype == DType::F16 ? f32_to_f16(t->f32()[i]) : (uint16_t)(bits >> 16);
      }
      data = half.data();
      bytes = half.size() * 2;
    }
    std::fwrite(data, 1, bytes, f);
    refs.push_back({spec.name, path, off, bytes, dtype, spec.shape});
    off += bytes;
  }
  std::fclose(f);
  return refs;
}

std::string ErrorOf(const ModelConfig& cfg, const WeightSource& src) {
  try {
    HostWeights w(cfg, src, DType::F32);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}
}  // namespace

HS_TEST(file_weights_load_and_convert) {
  const auto cfg = test::TinyOpt();
  HostWeights ref(cfg, WeightSource{true, 3, {}}, DType::F32);
  const std::string path = "/tmp/hs_weights_test_" + std::to_string(::getpid()) + ".bin";
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    WeightSource src{false, 0, WriteFile(path, cfg, ref, dt)};
    HostWeights w(cfg, src, DType::F32);
    const double tol = dt == DType::F32 ? 0 : dt == DType::F16 ? 1e-3 : 1e-2;
    for (const char* name : {"embed_tokens.weight", "layers.1.fc1.weight", "final_norm.bias"}) {
      const auto &a = w.get(name), &b = ref.get(name);
      HS_CHECK_EQ(a.numel(), b.numel());
      for (size_t i = 0; i < a.numel(); i += 5) HS_CHECK_NEAR(a.f32()[i], b.f32()[i], tol);
    }
  }
  // Errors: missing tensor, wrong shape, wrong byte length, truncated file, unknown tensor.
  WeightSource src{false, 0, WriteFile(path, cfg, ref, DType::F32)};
  {
    WeightSource s = src;
    s.tensors.erase(s.tensors.begin() + 3);
    HS_CHECK(ErrorOf(cfg, s).find("missing tensor") != std::string::npos);
  }
  {
    WeightSource s = src;
    s.tensors[0].shape = {10, 10};
    HS_CHECK(ErrorOf(cfg, s).find("has shape [10, 10], expected [503, 32]") != std::string::npos);
  }
  {
    WeightSource s = src;
    s.tensors[1].byte_length -= 4;
    HS_CHECK(ErrorOf(cfg, s).find("bytes, expected") != std::string::npos);
  }
  {
    WeightSource s = src;
    s.tensors.back().offset += 1 << 20;
    HS_CHECK(ErrorOf(cfg, s).find("truncated") != std::string::npos);
  }
  {
    WeightSource s = src;
    s.tensors.push_back(s.tensors[0]);
    s.tensors.back().name = "layers.9.q_proj.weight";
    HS_CHECK(ErrorOf(cfg, s).find("unexpected tensor") != std::string::npos);
  }
  {
    WeightSource s = src;
    for (auto& t : s.tensors) t.path = "/nonexistent/x.safetensors";
    HS_CHECK(ErrorOf(cfg, s).find("cannot open") != std::string::npos);
  }
  std::remove(path.c_str());
}
