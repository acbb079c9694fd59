// Quantised weight formats (issue 14): how a [rows, cols] weight matrix (a PyTorch Linear weight,
// rows = output channels) is stored in fp8, int8 or int4, and the pure functions that quantise and
// dequantise it. Shared by the CPU GEMM (dequantise on the fly), the CUDA dequantise kernels and
// the loader, so every backend reads one layout.
//
// Layout of one quantised matrix, a single contiguous buffer of QuantizedBytes() bytes:
//   codes   rows x CodeStride(cols) bytes
//           fp8 : one OCP e4m3fn byte per element (no inf; 0x7f/0xff are NaN and never produced)
//           int8: one two's-complement byte per element
//           int4: two elements per byte, element k of a row in byte k/2 (even k: low nibble)
//   scales  float32, at byte ScalesOffset(): fp8/int8 one per row (per output channel),
//           int4 one per (row, group of kInt4Group columns), row-major
//   zeros   uint8 in [0, 15] (int4 only), at byte ZerosOffset(), one per (row, group)
// Dequantised values: fp8 decode(code)·scale, int8 code·scale, int4 (code − zero)·scale.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace hs {

// Native = the store dtype of the engine (F32 on the CPU, F16 on CUDA): no quantisation.
enum class WeightFormat : uint8_t { Native = 0, FP8 = 1, INT8 = 2, INT4 = 3 };

constexpr int kInt4Group = 128;   // columns per int4 scale/zero group
constexpr float kFp8Max = 448.f;  // largest finite e4m3fn value

// "fp16" (and "native") → Native, "fp8", "int8", "int4". Returns false for anything else.
bool ParseWeightFormat(const std::string& s, WeightFormat* out);
const char* WeightFormatName(WeightFormat f);  // "fp16", "fp8", "int8", "int4"

size_t CodeStride(WeightFormat f, int64_t cols);    // bytes of codes per row
int64_t ScaleGroups(WeightFormat f, int64_t cols);  // scales per row
size_t ScalesOffset(WeightFormat f, int64_t rows, int64_t cols);
size_t ZerosOffset(WeightFormat f, int64_t rows, int64_t cols);
// Total bytes of the buffer (codes + scales + zeros). Throws std::invalid_argument for Native.
size_t QuantizedBytes(WeightFormat f, int64_t rows, int64_t cols);

// A non-owning view of one quantised matrix.
struct QuantView {
  WeightFormat format = WeightFormat::Native;
  int64_t rows = 0, cols = 0;
  const uint8_t* codes = nullptr;
  const float* scales = nullptr;
  const uint8_t* zeros = nullptr;  // int4 only
};
QuantView ViewQuantized(WeightFormat f, int64_t rows, int64_t cols, const uint8_t* buffer);

// Quantises w[rows, cols] (row-major) into `out` (QuantizedBytes bytes), round-to-nearest:
// fp8/int8 with a symmetric per-row scale (max |w| maps to 448 / 127), int4 with an asymmetric
// per-group scale (max − min)/15 and integer zero point.
void Quantize(const float* w, int64_t rows, int64_t cols, WeightFormat f, uint8_t* out);

// Writes rows [r0, r1) dequantised to out[(r − r0)·cols + c]. The hot loop of the quantised GEMM.
void DequantizeRows(const QuantView& q, int64_t r0, int64_t r1, float* out);

// The largest |w − dequantised(w)| round-to-nearest can give for element (row, col) of a matrix
// quantised from w: half a step for int8/int4 (scale/2), half an ulp of e4m3 for fp8
// (max(|w|·2⁻⁴, scale·2⁻¹⁰)). Exact-arithmetic bound; callers add float rounding slack.
double QuantErrorBound(const QuantView& q, int64_t row, int64_t col, float w);

// OCP fp8 e4m3fn scalar conversions (round-to-nearest-even, saturating at ±448, NaN → 0x7f).
uint8_t Fp8E4M3FromFloat(float x);
float Fp8E4M3ToFloat(uint8_t code);

}  // namespace hs
