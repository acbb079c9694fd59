// Quantised weights (issue 14): the fp8 e4m3 codec, quantise → dequantise round trips within each
// format's bound, the quantised GEMM on every CPU kernel against a float64 reference of the
// dequantised weights, the loader, and a quantised engine against the f32 one.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/quant.h"
#include "core/weights.h"
#include "cpu/gemm.h"
#include "test.h"
#include "test_util.h"

using namespace hs;

namespace {

const WeightFormat kFormats[] = {WeightFormat::FP8, WeightFormat::INT8, WeightFormat::INT4};

struct Rng {  // splitmix64, so failures reproduce
  uint64_t s;
  float Next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((z >> 40) * (1.0 / (1ull << 24))) * 2.f - 1.f;  // [-1, 1)
  }
};

// Rows of varied magnitude (per-row scales matter), one all-zero row, one row with an outlier.
std::vector<float> Matrix(int rows, int cols, uint64_t seed) {
  Rng rng{seed};
  std::vector<float> w((size_t)rows * cols);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) w[(size_t)r * cols + c] = rng.Next() * (r == 1 ? 0.f : std::ldexp(1.f, r % 7 - 4));
  if (rows > 2) w[(size_t)2 * cols + cols / 3] = 40.f;
  return w;
}

struct Quantized {
  std::vector<uint8_t> buf;
  QuantView view;
};

Quantized QuantizeCopy(const std::vector<float>& w, int rows, int cols, WeightFormat f) {
  Quantized q;
  q.buf.assign(QuantizedBytes(f, rows, cols), 0xcd);
  Quantize(w.data(), rows, cols, f, q.buf.data());
  q.view = ViewQuantized(f, rows, cols, q.buf.data());
  return q;
}

std::vector<float> Dequantized(const QuantView& q) {
  std::vector<float> out((size_t)q.rows * q.cols);
  DequantizeRows(q, 0, q.rows, out.data());
  return out;
}

}  // namespace

HS_TEST(quant_fp8_codec_exact_and_round_to_nearest_even) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) {
      HS_CHECK(std::isnan(Fp8E4M3ToFloat((uint8_t)c)));
      continue;
    }
    HS_CHECK_EQ((int)Fp8E4M3FromFloat(Fp8E4M3ToFloat((uint8_t)c)), c);  // every value encodes to itself
  }
  HS_CHECK_EQ(Fp8E4M3ToFloat(0x7e), 448.f);
  HS_CHECK_EQ(Fp8E4M3ToFloat(0x08), 0.015625f);     // smallest normal 2^-6
  HS_CHECK_EQ(Fp8E4M3ToFloat(0x01), 0.001953125f);  // smallest subnormal 2^-9
  HS_CHECK_EQ((int)Fp8E4M3FromFloat(1e6f), 0x7e);   // saturates, never NaN
  HS_CHECK_EQ((int)Fp8E4M3FromFloat(-1e6f), 0xfe);
  HS_CHECK_EQ((int)Fp8E4M3FromFloat(1.0625f), 0x38);  // halfway 1 | 1.125: to even (1.0)
  HS_CHECK_EQ((int)Fp8E4M3FromFloat(1.1875f), 0x3a);  // halfway 1.125 | 1.25: to even (1.25)
  HS_CHECK_EQ((int)Fp8E4M3FromFloat(1.07f), 0x39);
  HS_CHECK_EQ((int)Fp8E4M3FromFloat(15.9f), 0x58);          // rounds up into the next binade (16)
  HS_CHECK_EQ((int)Fp8E4M3FromFloat(0.0009765625f), 0x00);  // 2^-10: halfway 0 | 2^-9, to even
  // DequantizeRows decodes every non-NaN code (scale 1) to the same value as the scalar codec.
  std::vector<uint8_t> codes;
  for (int c = 0; c < 256; ++c)
    if ((c & 0x7f) != 0x7f) codes.push_back((uint8_t)c);
  const float one = 1.f;
  QuantView v{WeightFormat::FP8, 1, (int64_t)codes.size(), codes.data(), &one, nullptr};
  std::vector<float> d(codes.size());
  DequantizeRows(v, 0, 1, d.data());
  for (size_t i = 0; i < codes.size(); ++i) HS_CHECK_EQ(d[i], Fp8E4M3ToFloat(codes[i]));
}

HS_TEST(quant_layout_sizes) {
  // int4 [5, 300]: 150 code bytes a row, 3 groups (128, 128, 44) → 15 scales and 15 zero points.
  HS_CHECK_EQ(CodeStride(WeightFormat::INT4, 300), (size_t)150);
  HS_CHECK_EQ(ScaleGroups(WeightFormat::INT4, 300), (int64_t)3);
  HS_CHECK_EQ(QuantizedBytes(WeightFormat::INT4, 5, 300), (size_t)(768 + 64 + 15));
  HS_CHECK_EQ(QuantizedBytes(WeightFormat::INT8, 5, 300), (size_t)(1536 + 64));  // scales start on a 64-byte line
  HS_CHECK_EQ(QuantizedBytes(WeightFormat::FP8, 5, 301), (size_t)(1536 + 64));   // scales start on a 64-byte line
  HS_CHECK_THROWS(QuantizedBytes(WeightFormat::Native, 5, 300), std::invalid_argument);
  WeightFormat f;
  HS_CHECK(ParseWeightFormat("int4", &f) && f == WeightFormat::INT4);
  HS_CHECK(ParseWeightFormat("fp16", &f) && f == WeightFormat::Native);
  HS_CHECK(!ParseWeightFormat("int3", &f));
}

// A matrix large enough for Quantize to split its rows over threads gives, byte for byte, what
// quantising each row alone gives (the serial path).
HS_TEST(quant_threaded_matches_row_by_row) {
  const int64_t rows = 1024, cols = 4160;  // 4.26M elements (threaded); int4: a partial last group
  std::vector<float> w(static_cast<size_t>(rows * cols));
  uint32_t x = 17;
  for (float& v : w) {
    x = x * 1664525u + 1013904223u;
    v = static_cast<float>(static_cast<int32_t>(x >> 8) - (1 << 23)) / (1 << 23) * 0.7f;
  }
  for (WeightFormat f : {WeightFormat::FP8, WeightFormat::INT8, WeightFormat::INT4}) {
    std::vector<uint8_t> all(QuantizedBytes(f, rows, cols)), one(QuantizedBytes(f, 1, cols));
    Quantize(w.data(), rows, cols, f, all.data());
    const QuantView a = ViewQuantized(f, rows, cols, all.data());
    const size_t stride = CodeStride(f, cols);
    const int64_t groups = ScaleGroups(f, cols);
    int bad = 0;
    for (int64_t r = 0; r < rows; ++r) {
      Quantize(w.data() + r * cols, 1, cols, f, one.data());
      const QuantView o = ViewQuantized(f, 1, cols, one.data());
      bad += std::memcmp(a.codes + r * stride, o.codes, stride) != 0;
      bad += std::memcmp(a.scales + r * groups, o.scales, groups * sizeof(float)) != 0;
      if (f == WeightFormat::INT4) bad += std::memcmp(a.zeros + r * groups, o.zeros, groups) != 0;
    }
    HS_CHECK_EQ(bad, 0);
  }
}

HS_TEST(quant_round_trip_within_format_bound) {
  const int rows = 9, cols = 301;  // odd: a half-filled int4 byte and a partial last group
  const auto w = Matrix(rows, cols, 11);
  for (WeightFormat f : kFormats) {
    const Quantized q = QuantizeCopy(w, rows, cols, f);
    const auto d = Dequantized(q.view);
    int over = 0;
    double worst_ratio = 0;
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) {
        const size_t i = (size_t)r * cols + c;
        const double err = std::fabs((double)d[i] - w[i]);
        const double bound = QuantErrorBound(q.view, r, c, w[i]);
        // float rounding of w/scale and code·scale: a few ulps of the value
        if (err > bound * (1 + 1e-5) + 4e-7 * std::fabs(w[i])) ++over;
        if (bound > 0) worst_ratio = std::max(worst_ratio, err / bound);
      }
    HS_CHECK_EQ(over, 0);
    HS_CHECK(worst_ratio > 0.5);                                           // the bound is tight, not vacuous
    for (int c = 0; c < cols; ++c) HS_CHECK_EQ(d[(size_t)cols + c], 0.f);  // zero row stays exactly zero
    std::fprintf(stderr, "    %s: worst error / bound = %.3f\n", WeightFormatName(f), worst_ratio);
  }
  // int8 and int4 codes are exact at their grid points: a matrix of grid values round-trips exactly.
  std::vector<float> grid(4 * 128);
  for (size_t i = 0; i < grid.size(); ++i) grid[i] = ((int)(i % 16) - 5) * 0.25f;
  for (WeightFormat f : {WeightFormat::INT4}) {
    const auto d = Dequantized(QuantizeCopy(grid, 4, 128, f).view);
    for (size_t i = 0; i < grid.size(); ++i) HS_CHECK_NEAR(d[i], grid[i], 1e-6);
  }
}

namespace {

// gemm_nt_q against gemm_nt_reference (float64 sums) on the dequantised weights.
int CompareQuantGemm(WeightFormat f, int M, int N, int K, float beta, bool bias, cpu::ThreadPool* pool, uint64_t seed) {
  Rng rng{seed};
  const int lda = K + 3, ldc = N + 2;
  std::vector<float> A((size_t)M * lda), b(N), C0((size_t)M * ldc);
  for (auto& x : A) x = rng.Next();
  for (auto& x : b) x = rng.Next();
  for (auto& x : C0) x = rng.Next();
  const auto w = Matrix(N, K, seed * 7);
  const Quantized q = QuantizeCopy(w, N, K, f);
  const auto deq = Dequantized(q.view);
  std::vector<float> got = C0, want = C0;
  cpu::gemm_nt_q(M, N, K, A.data(), lda, q.view, got.data(), ldc, beta, bias ? b.data() : nullptr, pool);
  cpu::gemm_nt_reference(M, N, K, A.data(), lda, deq.data(), K, want.data(), ldc, beta, bias ? b.data() : nullptr);
  double wmax = 0;
  for (float x : deq) wmax = std::max(wmax, (double)std::fabs(x));
  const double tol = 1e-5 * (K + 1) * std::max(1.0, wmax);
  int bad = 0;
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < ldc; ++n) {
      const size_t i = (size_t)m * ldc + n;
      const bool ok = n < N ? std::fabs((double)got[i] - want[i]) <= tol : got[i] == C0[i];
      if (!ok && bad++ < 3)
        std::fprintf(stderr, "    %s M=%d N=%d K=%d: C[%d,%d] = %g, want %g\n", WeightFormatName(f), M, N, K, m, n,
                     got[i], n < N ? want[i] : C0[i]);
    }
  return bad;
}

struct KernelScope {
  explicit KernelScope(const std::string& name) { cpu::gemm_force_kernel(name.c_str()); }
  ~KernelScope() { cpu::gemm_force_kernel(nullptr); }
};

}  // namespace

HS_TEST(quant_gemm_matches_float64_reference_every_kernel) {
  cpu::ThreadPool pool(3);
  struct Shape {
    int M, N, K;
  };
  // Decode and prefill shapes, N spanning several dequantised panels, K over the kernels' K block
  // (1024) and over int4 groups with a partial last group, odd K for a half-filled int4 byte.
  const Shape shapes[] = {{1, 37, 129}, {3, 200, 777}, {16, 300, 256}, {13, 50, 1500}, {70, 96, 131}, {1, 1000, 768}};
  uint64_t seed = 1;
  for (const std::string& kernel : cpu::gemm_supported_kernels()) {
    KernelScope scope(kernel);
    for (WeightFormat f : kFormats)
      for (const Shape& s : shapes)
        for (cpu::ThreadPool* p : {(cpu::ThreadPool*)nullptr, &pool}) {
          const bool bias = seed % 2 == 0;
          HS_CHECK_EQ(CompareQuantGemm(f, s.M, s.N, s.K, seed % 3 == 0 ? 1.f : 0.f, bias, p, seed), 0);
          ++seed;
        }
  }
}

HS_TEST(quant_gemm_rejects_bad_arguments) {
  const auto w = Matrix(8, 16, 3);
  const Quantized q = QuantizeCopy(w, 8, 16, WeightFormat::INT8);
  std::vector<float> A(4 * 16), C(4 * 8);
  HS_CHECK_THROWS(cpu::gemm_nt_q(4, 8, 17, A.data(), 17, q.view, C.data(), 8, 0.f, nullptr, nullptr),
                  std::invalid_argument);
  HS_CHECK_THROWS(cpu::gemm_nt_q(4, 8, 16, A.data(), 15, q.view, C.data(), 8, 0.f, nullptr, nullptr),
                  std::invalid_argument);
  HS_CHECK_THROWS(cpu::gemm_nt_q(4, 8, 16, nullptr, 16, q.view, C.data(), 8, 0.f, nullptr, nullptr),
                  std::invalid_argument);
  QuantView native = q.view;
  native.format = WeightFormat::Native;
  HS_CHECK_THROWS(cpu::gemm_nt_q(4, 8, 16, A.data(), 16, native, C.data(), 8, 0.f, nullptr, nullptr),
                  std::invalid_argument);
}

HS_TEST(quant_loader_quantises_only_layer_matrices) {
  const auto cfg = test::TinyLlama();
  WeightSource f32src{true, 5, {}};
  HostWeights ref(cfg, f32src, DType::F32);
  for (WeightFormat f : kFormats) {
    WeightSource src{true, 5, {}};
    src.format = f;
    HostWeights w(cfg, src, DType::F32);
    HS_CHECK(w.format() == f);
    HS_CHECK(w.total_bytes() < ref.total_bytes());
    HS_CHECK(!w.get("embed_tokens.weight").quantized());  // embeddings, norms and lm_head stay f32
    HS_CHECK(!w.get("lm_head.weight").quantized());
    HS_CHECK(!w.get("layers.0.attn_norm.weight").quantized());
    const HostTensor& t = w.get("layers.1.down_proj.weight");
    HS_CHECK(t.quantized());
    HS_CHECK_EQ(t.bytes, QuantizedBytes(f, cfg.hidden_size, cfg.ffn_size));
    const auto d = Dequantized(t.quant());
    const float* orig = ref.get("layers.1.down_proj.weight").f32();
    for (size_t i = 0; i < d.size(); ++i) {
      const int64_t r = (int64_t)i / cfg.ffn_size, c = (int64_t)i % cfg.ffn_size;
      HS_CHECK(std::fabs(d[i] - orig[i]) <= QuantErrorBound(t.quant(), r, c, orig[i]) * (1 + 1e-5) + 1e-7);
    }
  }
}

namespace {

std::unique_ptr<Engine> QuantEngine(const ModelConfig& cfg, WeightFormat f, double act_fraction) {
  EngineParts parts = test::TinyParts(cfg, f);
  parts.backend = std::make_unique<cpu::CpuBackend>(cfg, *parts.weights, *parts.pools, 2);
  return std::make_unique<Engine>(cfg, std::move(parts), act_fraction);
}

// Logits of a 10-step greedy decode after a 9-token prompt.
std::vector<std::vector<float>> Decode(Engine& e, const std::vector<int32_t>& prompt) {
  std::vector<std::vector<float>> out;
  const int64_t id = e.AddSequence(prompt.data(), (int)prompt.size(), {});
  for (int s = 0; s < 10; ++s) out.push_back(e.Step({id}, true).logits);
  return out;
}

}  // namespace

HS_TEST(quant_engine_close_to_f32_and_act_invariant) {
  for (const ModelConfig& cfg : {test::TinyOpt(), test::TinyLlama()}) {
    const auto prompt = test::Prompt(9, 2, cfg.vocab_size);
    auto ref_engine = test::MakeCpuEngine(cfg, 64, 64, 0.0);
    const auto ref = Decode(*ref_engine, prompt);
    // Per-format ceiling on the relative logit error of the first step (measured: well below).
    const double limit[] = {0.15, 0.03, 0.25};
    for (int fi = 0; fi < 3; ++fi) {
      auto kv = QuantEngine(cfg, kFormats[fi], 0.0);
      auto act = QuantEngine(cfg, kFormats[fi], 0.75);
      const auto a = Decode(*kv, prompt), b = Decode(*act, prompt);
      const double err = test::RelError(a[0].data(), ref[0].data(), cfg.vocab_size);
      HS_CHECK(err > 0 && err < limit[fi]);
      // ACT recompute runs the same quantised K/V projections as the KV path.
      for (size_t s = 0; s < a.size(); ++s) HS_CHECK(test::RelError(b[s].data(), a[s].data(), cfg.vocab_size) < 1e-4);
      HS_CHECK(act->totals().recomputed_tokens > 0);
      // Counted weight traffic shrinks with the format.
      HS_CHECK(kv->totals().weight_bytes_h2d < ref_engine->totals().weight_bytes_h2d);  // same number of steps
      std::fprintf(stderr, "    %s %s: first-step relative logit error %.4f\n", cfg.arch == Arch::OPT ? "opt" : "llama",
                   WeightFormatName(kFormats[fi]), err);
    }
  }
}
