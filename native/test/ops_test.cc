// Each CPU op against a naive reference written from the formula.
#include <cmath>
#include <random>
#include <vector>

#include "core/half.h"
#include "cpu/activation.h"
#include "cpu/attention.h"
#include "cpu/gemm.h"
#include "cpu/norm.h"
#include "cpu/rope.h"
#include "test.h"

using namespace hs;

namespace {
std::vector<float> Random(size_t n, unsigned seed, float scale = 1.f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}
}  // namespace

HS_TEST(layernorm_matches_formula) {
  const int rows = 3, dim = 37;
  auto x = Random(rows * dim, 1, 3.f), w = Random(dim, 2), b = Random(dim, 3);
  std::vector<float> out(rows * dim);
  cpu::LayerNorm(x.data(), out.data(), rows, dim, w.data(), b.data(), 1e-5f);
  for (int r = 0; r < rows; ++r) {
    double m = 0, v = 0;
    for (int i = 0; i < dim; ++i) m += x[r * dim + i];
    m /= dim;
    for (int i = 0; i < dim; ++i) v += (x[r * dim + i] - m) * (x[r * dim + i] - m);
    v /= dim;
    for (int i = 0; i < dim; ++i)
      HS_CHECK_NEAR(out[r * dim + i], (x[r * dim + i] - m) / std::sqrt(v + 1e-5) * w[i] + b[i], 1e-5);
  }
}

HS_TEST(rmsnorm_matches_formula) {
  const int rows = 2, dim = 40;
  auto x = Random(rows * dim, 4, 2.f), w = Random(dim, 5);
  std::vector<float> out(rows * dim);
  cpu::RmsNorm(x.data(), out.data(), rows, dim, w.data(), 1e-6f);
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int i = 0; i < dim; ++i) ss += x[r * dim + i] * x[r * dim + i];
    const double inv = 1 / std::sqrt(ss / dim + 1e-6);
    for (int i = 0; i < dim; ++i) HS_CHECK_NEAR(out[r * dim + i], x[r * dim + i] * inv * w[i], 1e-5);
  }
}

HS_TEST(activations_match_formula) {
  auto g = Random(100, 6, 6.f), u = Random(100, 7), r = g;
  auto s = g;
  cpu::ReluInPlace(r.data(), r.size());
  cpu::SiluMulInPlace(s.data(), u.data(), s.size());
  for (size_t i = 0; i < g.size(); ++i) {
    HS_CHECK_EQ(r[i], g[i] > 0 ? g[i] : 0.f);
    HS_CHECK_NEAR(s[i], g[i] / (1 + std::exp(-(double)g[i])) * u[i], 1e-5);
  }
}

HS_TEST(rope_rotates_pairs_i_and_i_plus_half) {
  const int heads = 3, d = 16, pos = 37;
  const float theta = 10000.f;
  cpu::RopeTable t(64, d, theta);
  auto x = Random(heads * d, 8), y = x;
  cpu::ApplyRope(y.data(), heads, d, pos, t);
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < d / 2; ++i) {
      const double a = pos * std::pow((double)theta, -2.0 * i / d);
      const double x1 = x[h * d + i], x2 = x[h * d + i + d / 2];
      HS_CHECK_NEAR(y[h * d + i], x1 * std::cos(a) - x2 * std::sin(a), 1e-5);
      HS_CHECK_NEAR(y[h * d + i + d / 2], x2 * std::cos(a) + x1 * std::sin(a), 1e-5);
    }
  // Position 0 is the identity.
  auto z = x;
  cpu::ApplyRope(z.data(), heads, d, 0, t);
  for (size_t i = 0; i < x.size(); ++i) HS_CHECK_EQ(z[i], x[i]);
}

// Naive causal GQA attention over contiguous K/V [len, kv_heads*d] for one sequence.
static void NaiveAttention(const float* q, const float* k, const float* v, float* out, int num_new, int start, int nh,
                           int nkv, int d) {
  for (int i = 0; i < num_new; ++i)
    for (int h = 0; h < nh; ++h) {
      const int kvh = h * nkv / nh;
      const int n = start + i + 1;
      std::vector<double> s(n);
      double mx = -1e300, sum = 0;
      for (int j = 0; j < n; ++j) {
        double dot = 0;
        for (int e = 0; e < d; ++e) dot += (double)q[(i * nh + h) * d + e] * k[(j * nkv + kvh) * d + e];
        s[j] = dot / std::sqrt((double)d);
        mx = std::max(mx, s[j]);
      }
      for (int j = 0; j < n; ++j) sum += (s[j] = std::exp(s[j] - mx));
      for (int e = 0; e < d; ++e) {
        double o = 0;
        for (int j = 0; j < n; ++j) o += s[j] / sum * v[(j * nkv + kvh) * d + e];
        out[(i * nh + h) * d + e] = (float)o;
      }
    }
}

static void CheckPagedAttention(int d) {
  const int nh = 8, nkv = 2;
  cpu::ThreadPool pool(2);
  cpu::AttnScratch scratch;
  // Two sequences: a decode step (1 new token after 29 cached) and a prefill (7 tokens).
  const int news[2] = {1, 7}, starts[2] = {29, 0};
  std::vector<std::vector<float>> K(2), V(2), Q(2), out(2), ref(2);
  std::vector<std::vector<const float*>> kp(2), vp(2);
  std::vector<cpu::AttnSeq> seqs(2);
  for (int s = 0; s < 2; ++s) {
    const int len = starts[s] + news[s];
    K[s] = Random((size_t)len * nkv * d, 10 + s, 2.f);
    V[s] = Random((size_t)len * nkv * d, 20 + s);
    Q[s] = Random((size_t)news[s] * nh * d, 30 + s, 2.f);
    out[s].assign((size_t)news[s] * nh * d, 0.f);
    ref[s] = out[s];
    // Paged: rows visited through a pointer per position, in a scrambled physical order.
    std::vector<float> phys_k(K[s].size()), phys_v(V[s].size());
    for (int j = 0; j < len; ++j) {
      const int slot = (j * 7 + 3) % len;  // 7 is coprime with both lengths
      std::copy_n(&K[s][(size_t)j * nkv * d], nkv * d, &phys_k[(size_t)slot * nkv * d]);
      std::copy_n(&V[s][(size_t)j * nkv * d], nkv * d, &phys_v[(size_t)slot * nkv * d]);
    }
    K[s].swap(phys_k);
    V[s].swap(phys_v);
    for (int j = 0; j < len; ++j) {
      const int slot = (j * 7 + 3) % len;
      kp[s].push_back(&K[s][(size_t)slot * nkv * d]);
      vp[s].push_back(&V[s][(size_t)slot * nkv * d]);
    }
    seqs[s] = {news[s], starts[s], Q[s].data(), out[s].data(), kp[s].data(), vp[s].data()};
  }
  cpu::Attention(seqs.data(), 2, {nh, nkv, d, 1.f / std::sqrt((float)d)}, &pool, scratch);
  for (int s = 0; s < 2; ++s) {
    const int len = starts[s] + news[s];
    std::vector<float> kc((size_t)len * nkv * d), vc(kc.size());
    for (int j = 0; j < len; ++j) {
      std::copy_n(kp[s][j], nkv * d, &kc[(size_t)j * nkv * d]);
      std::copy_n(vp[s][j], nkv * d, &vc[(size_t)j * nkv * d]);
    }
    NaiveAttention(Q[s].data(), kc.data(), vc.data(), ref[s].data(), news[s], starts[s], nh, nkv, d);
    for (size_t i = 0; i < ref[s].size(); ++i) HS_CHECK_NEAR(out[s][i], ref[s][i], 1e-5);
  }
}

// 8 and 40 take the generic path; 16, 64 and 128 the fixed-size ones.
HS_TEST(attention_paged_gqa_matches_naive) {
  for (int d : {8, 16, 40, 64, 128}) CheckPagedAttention(d);
}

HS_TEST(half_conversions_round_trip) {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const bool nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff);
    if (nan) continue;
    if (f32_to_f16(f16_to_f32((uint16_t)h)) != h) ++bad;
  }
  HS_CHECK_EQ(bad, 0);
  HS_CHECK_EQ(f16_to_f32(0x3c00), 1.f);
  HS_CHECK_EQ(f32_to_f16(65520.f), 0x7c00);                // rounds to inf
  HS_CHECK_EQ(f32_to_f16(1.f + 1.f / 2048), 0x3c00);       // halfway: ties to even
  HS_CHECK_EQ(f32_to_f16(1.f + 3.f / 2048), 0x3c02);       // halfway: ties to even (up)
  HS_CHECK_EQ(f32_to_f16(std::ldexp(1.f, -25)), 0x0000);   // half of the smallest subnormal: ties to even
  HS_CHECK_EQ(f32_to_f16(std::ldexp(1.5f, -24)), 0x0002);  // 1.5 ulp subnormal rounds to even (2)
  HS_CHECK_EQ(bf16_to_f32(0x3f80), 1.f);
}
