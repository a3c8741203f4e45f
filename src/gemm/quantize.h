// FP8 E4M3 quantization with fine-grained scales, as DeepSeek-V3 and DeepGEMM use it:
//   activations: one FP32 scale per row per 128 input channels, scales [M, ceil(K/128)]
//   weights:     one FP32 scale per 128x128 block,               scales [ceil(N/128), ceil(K/128)]
// For each group, s = max(amax, 1e-4) / 448 and x_fp8 = fp8(x * (448 / max(amax, 1e-4))), so
// the largest magnitude maps to 448; value = x_fp8 * s (the checkpoint's weight_scale_inv).
// ScaleFormat::kUe8m0 rounds s up to a power of two first (DeepGEMM's UE8M0 scales), so
// applying a scale only changes exponents.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace cachalot::gemm {

inline constexpr int64_t kBlock = 128;  // quantization group / block edge

enum class ScaleFormat { kFloat, kUe8m0 };

struct Fp8Tensor {
  Tensor data;    // F8_E4M3
  Tensor scales;  // F32
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// One quantization group: encodes x[0..n) as FP8 given the group's amax (its largest magnitude,
// which for a 128x128 weight block spans other rows too) and returns the scale. The one place
// the scheme above is written; the KV cache's FP8 tokens use it as well.
float quantize_group(const float* x, int64_t n, float amax, fp8_e4m3* out, ScaleFormat format = ScaleFormat::kFloat);
// Largest magnitude of x[0..n).
float group_amax(const float* x, int64_t n);

// x: BF16 or F32 [M, K] -> FP8 [M, K] + scales [M, ceil(K/128)].
Fp8Tensor quantize_activations(const Tensor& x, ScaleFormat format = ScaleFormat::kFloat);
// w: BF16 or F32 [N, K] -> FP8 [N, K] + scales [ceil(N/128), ceil(K/128)].
Fp8Tensor quantize_weights(const Tensor& w, ScaleFormat format = ScaleFormat::kFloat);
// Back to F32, exactly value = fp8 * scale.
Tensor dequantize_activations(const Tensor& data, const Tensor& scales);
Tensor dequantize_weights(const Tensor& data, const Tensor& scales);
// Rows [row0, row1) of dequantize_weights(data, scales), written to out ([row1 - row0, K] F32):
// for consumers that stream a large weight through a small buffer.
void dequantize_weight_rows(const Tensor& data, const Tensor& scales, int64_t row0, int64_t row1, float* out);

}  // namespace cachalot::gemm
