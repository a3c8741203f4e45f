// Row arithmetic the communication paths need (combine sums rows from many ranks): y += w * x
// over n floats, x F32 or BF16, and the weighted sum of several rows at once. Dispatched at run
// time like convert(); every path multiplies then adds (never a fused multiply-add), so results
// are identical on every ISA and equal to the plain loop `y[i] += w * x[i]` compiled with
// -ffp-contract=off.
#pragma once

#include <cstddef>

#include "core/float_formats.h"

namespace cachalot {

void add_scaled(float* y, const float* x, float w, size_t n);
void add_scaled(float* y, const bf16* x, float w, size_t n);
// y[i] = w[0] * x[0][i] + w[1] * x[1][i] + ... over `rows` rows, summed in that order from +0:
// the bits of zeroing y and calling add_scaled once per row, but y is written once instead of
// read and written per row (a combine's output rows are too large to stay in cache between its
// sources). rows == 0 zeroes y.
void weighted_sum(float* y, const float* const* x, const float* w, size_t rows, size_t n);
void weighted_sum(float* y, const bf16* const* x, const float* w, size_t rows, size_t n);
// max |x[i]| over n floats (0 for n == 0); NaNs are skipped, as std::max(m, NaN) keeps m. What
// FP8 quantization scales by, for every group of 128 activations.
float abs_max(const float* x, size_t n);

namespace vector_kernels {
#define CACHALOT_DECLARE_VECTOR_OPS(ns)                          \
  namespace ns {                                                 \
  void add_scaled(float* y, const float* x, float w, size_t n);  \
  void add_scaled(float* y, const bf16* x, float w, size_t n);   \
  void weighted_sum(float* y, const float* const* x, const float* w, size_t rows, size_t n); \
  void weighted_sum(float* y, const bf16* const* x, const float* w, size_t rows, size_t n);  \
  float abs_max(const float* x, size_t n);                                                     \
  }
CACHALOT_DECLARE_VECTOR_OPS(portable)
CACHALOT_DECLARE_VECTOR_OPS(avx512)
#undef CACHALOT_DECLARE_VECTOR_OPS
}  // namespace vector_kernels

}  // namespace cachalot
