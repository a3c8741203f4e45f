// The two numerics modes (DESIGN.md) and the element-wise operations both share.
//   kExact: FP32 activations, weights dequantized to FP32, FP32 softmax; the KV cache in FP32.
//           For golden tests against the float64 reference.
//   kFast:  the production path: BF16 activations between operations (FP32 values rounded to
//           BF16 where DeepSeek's code stores BF16), FP8 GEMMs on 1x128-quantized activations,
//           BF16 absorbed-attention weights, the MLA kernels over a BF16 or FP8 cache.
// Activations travel as FP32 buffers in both modes; the fast mode rounds them in place, so one
// forward pass serves both.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/tensor.h"

namespace cachalot::model {

enum class Precision { kExact, kFast };

// Rounds x[0..n) to BF16 values (nearest even) in place; a no-op in exact mode.
void round_activations(Precision precision, float* x, int64_t n);
inline void round_activations(Precision precision, Tensor& t) {
  round_activations(precision, t.mutable_data<float>(), t.numel());
}

// y = x / sqrt(mean(x^2) + eps) * weight over rows of `dim` values (y may alias x).
void rms_norm(const float* x, const float* weight, int64_t rows, int64_t dim, double eps, float* y);

inline float silu(float x) { return x / (1.0f + std::exp(-x)); }

}  // namespace cachalot::model
