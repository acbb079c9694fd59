// Row-wise normalisations (fp32): OPT's LayerNorm and Llama's RMSNorm, as in Hugging Face.
#pragma once

namespace hs::cpu {

// out[r] = (x[r] - mean) / sqrt(var + eps) * w + b  (biased variance; b may be null).
void LayerNorm(const float* x, float* out, int rows, int dim, const float* w, const float* b, float eps);

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w.
void RmsNorm(const float* x, float* out, int rows, int dim, const float* w, float eps);

}  // namespace hs::cpu
