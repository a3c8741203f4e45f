#include "core/vector_ops.h"

#include <algorithm>
#include <cmath>

#include "core/isa.h"

namespace cachalot {
namespace vector_kernels::portable {

void add_scaled(float* y, const float* x, float w, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] += w * x[i];
}
void add_scaled(float* y, const bf16* x, float w, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] += w * bf16_to_float(x[i]);
}

void weighted_sum(float* y, const float* const* x, const float* w, size_t rows, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    float acc = 0.0f;
    for (size_t r = 0; r < rows; ++r) acc += w[r] * x[r][i];
    y[i] = acc;
  }
}
void weighted_sum(float* y, const bf16* const* x, const float* w, size_t rows, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    float acc = 0.0f;
    for (size_t r = 0; r < rows; ++r) acc += w[r] * bf16_to_float(x[r][i]);
    y[i] = acc;
  }
}

float abs_max(const float* x, size_t n) {
  float m = 0.0f;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

}  // namespace vector_kernels::portable

void add_scaled(float* y, const float* x, float w, size_t n) {
  if (active_isa() == Isa::kAvx512) return vector_kernels::avx512::add_scaled(y, x, w, n);
  vector_kernels::portable::add_scaled(y, x, w, n);
}
void add_scaled(float* y, const bf16* x, float w, size_t n) {
  if (active_isa() == Isa::kAvx512) return vector_kernels::avx512::add_scaled(y, x, w, n);
  vector_kernels::portable::add_scaled(y, x, w, n);
}

void weighted_sum(float* y, const float* const* x, const float* w, size_t rows, size_t n) {
  if (active_isa() == Isa::kAvx512) return vector_kernels::avx512::weighted_sum(y, x, w, rows, n);
  vector_kernels::portable::weighted_sum(y, x, w, rows, n);
}
void weighted_sum(float* y, const bf16* const* x, const float* w, size_t rows, size_t n) {
  if (active_isa() == Isa::kAvx512) return vector_kernels::avx512::weighted_sum(y, x, w, rows, n);
  vector_kernels::portable::weighted_sum(y, x, w, rows, n);
}

float abs_max(const float* x, size_t n) {
  if (active_isa() == Isa::kAvx512) return vector_kernels::avx512::abs_max(x, n);
  return vector_kernels::portable::abs_max(x, n);
}

}  // namespace cachalot
