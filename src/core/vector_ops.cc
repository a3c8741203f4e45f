#include "core/vector_ops.h"

#include "core/isa.h"

namespace cachalot {
namespace vector_kernels::portable {

void add_scaled(float* y, const float* x, float w, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] += w * x[i];
}
void add_scaled(float* y, const bf16* x, float w, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] += w * bf16_to_float(x[i]);
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

}  // namespace cachalot
