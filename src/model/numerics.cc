#include "model/numerics.h"

#include "core/float_formats.h"
#include "core/thread_pool.h"

namespace cachalot::model {

void round_activations(Precision precision, float* x, int64_t n) {
  if (precision == Precision::kExact) return;
  for (int64_t i = 0; i < n; ++i) x[i] = bf16_to_float(float_to_bf16(x[i]));
}

void rms_norm(const float* x, const float* weight, int64_t rows, int64_t dim, double eps, float* y) {
  ThreadPool::global().parallel_for(0, rows, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* in = x + r * dim;
      float* out = y + r * dim;
      float sum = 0;
      for (int64_t i = 0; i < dim; ++i) sum += in[i] * in[i];
      const float inv = 1.0f / std::sqrt(sum / static_cast<float>(dim) + static_cast<float>(eps));
      for (int64_t i = 0; i < dim; ++i) out[i] = in[i] * inv * weight[i];
    }
  });
}

}  // namespace cachalot::model
