// Row arithmetic the communication paths need (combine sums rows from many ranks): y += w * x
// over n floats, x F32 or BF16. Dispatched at run time like convert(); every path multiplies
// then adds (never a fused multiply-add), so results are identical on every ISA and equal to
// the plain loop `y[i] += w * x[i]` compiled with -ffp-contract=off.
#pragma once

#include <cstddef>

#include "core/float_formats.h"

namespace cachalot {

void add_scaled(float* y, const float* x, float w, size_t n);
void add_scaled(float* y, const bf16* x, float w, size_t n);

namespace vector_kernels {
#define CACHALOT_DECLARE_VECTOR_OPS(ns)                          \
  namespace ns {                                                 \
  void add_scaled(float* y, const float* x, float w, size_t n);  \
  void add_scaled(float* y, const bf16* x, float w, size_t n);   \
  }
CACHALOT_DECLARE_VECTOR_OPS(portable)
CACHALOT_DECLARE_VECTOR_OPS(avx512)
#undef CACHALOT_DECLARE_VECTOR_OPS
}  // namespace vector_kernels

}  // namespace cachalot
