// Internal to quantize.cc and its ISA kernels: the one group-scale rule, and the fused
// per-row activation quantizers behind quantize_activations.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/float_formats.h"
#include "gemm/quantize.h"

namespace cachalot::gemm::detail {

inline constexpr float kMinAmax = 1e-4f;  // keeps all-zero groups from dividing by zero

// A group's scale (what value = code * scale uses) and the factor its values are multiplied by
// before encoding: 448 / amax (DeepGEMM's), or 1 / scale for UE8M0's power-of-two scales.
struct GroupScale {
  float scale, inv;
};
inline GroupScale group_scale(float amax, ScaleFormat format) {
  amax = std::max(amax, kMinAmax);
  float s = amax / kFp8E4M3Max;
  if (format == ScaleFormat::kUe8m0) s = std::exp2(std::ceil(std::log2(s)));
  return {s, format == ScaleFormat::kUe8m0 ? 1.0f / s : kFp8E4M3Max / amax};
}

}  // namespace cachalot::gemm::detail

namespace cachalot::gemm::avx512 {

// One row of k values -> codes q[0..k) and scales s[0..ceil(k/128)), bit for bit what
// quantize_group gives each 128-value group (its amax the group's largest magnitude).
void quantize_row(const bf16* x, int64_t k, ScaleFormat format, fp8_e4m3* q, float* s);
void quantize_row(const float* x, int64_t k, ScaleFormat format, fp8_e4m3* q, float* s);

}  // namespace cachalot::gemm::avx512
