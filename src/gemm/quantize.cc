#include "gemm/quantize.h"

#include <algorithm>
#include <vector>

#include "core/convert.h"
#include "core/error.h"
#include "core/isa.h"
#include "core/thread_pool.h"
#include "core/vector_ops.h"
#include "gemm/quantize_rows.h"

namespace cachalot::gemm {
namespace {

void check_matrix(const Tensor& x, const char* what) {
  CACHALOT_CHECK_ARG(x.dim() == 2, "{} must be 2-D, got {}", what, x.description());
  CACHALOT_CHECK_ARG(x.dtype() == DType::kBF16 || x.dtype() == DType::kF32,
                     "{} must be BF16 or F32, got {}", what, x.description());
  CACHALOT_CHECK_ARG(x.stride(1) == 1, "{} rows must be contiguous", what);
}

// Row r of x as float32 into out (K values).
void load_row(const Tensor& x, int64_t r, float* out) {
  const int64_t k = x.size(1);
  if (x.dtype() == DType::kF32) {
    std::copy_n(x.data<float>() + r * x.stride(0), k, out);
  } else {
    convert(x.data<bf16>() + r * x.stride(0), out, static_cast<size_t>(k));
  }
}

}  // namespace

float group_amax(const float* x, int64_t n) { return abs_max(x, static_cast<size_t>(n)); }

float quantize_group(const float* x, int64_t n, float amax, fp8_e4m3* out, ScaleFormat format) {
  // DeepGEMM multiplies by 448/amax; with UE8M0 the power-of-two scale itself is divided.
  const detail::GroupScale s = detail::group_scale(amax, format);
  convert_scaled(x, s.inv, out, static_cast<size_t>(n));
  return s.scale;
}

Fp8Tensor quantize_activations(const Tensor& x, ScaleFormat format) {
  check_matrix(x, "activations");
  const int64_t m = x.size(0), k = x.size(1), kb = ceil_div(k, kBlock);
  Fp8Tensor out{Tensor::empty(DType::kF8E4M3, {m, k}), Tensor::empty(DType::kF32, {m, kb})};
  auto* q = out.data.mutable_data<fp8_e4m3>();
  auto* s = out.scales.mutable_data<float>();
  const bool avx512 = active_isa() == Isa::kAvx512;
  ThreadPool::global().parallel_for(0, m, [&](int64_t r0, int64_t r1, int) {
    if (avx512) {
      for (int64_t r = r0; r < r1; ++r) {
        if (x.dtype() == DType::kF32) {
          avx512::quantize_row(x.data<float>() + r * x.stride(0), k, format, q + r * k, s + r * kb);
        } else {
          avx512::quantize_row(x.data<bf16>() + r * x.stride(0), k, format, q + r * k, s + r * kb);
        }
      }
      return;
    }
    std::vector<float> row(static_cast<size_t>(k));
    for (int64_t r = r0; r < r1; ++r) {
      load_row(x, r, row.data());
      for (int64_t b = 0; b < kb; ++b) {
        const int64_t k0 = b * kBlock, len = std::min(kBlock, k - k0);
        const float* group = row.data() + k0;
        s[r * kb + b] = quantize_group(group, len, group_amax(group, len), q + r * k + k0, format);
      }
    }
  });
  return out;
}

Fp8Tensor quantize_weights(const Tensor& w, ScaleFormat format) {
  check_matrix(w, "weights");
  const int64_t n = w.size(0), k = w.size(1), nb = ceil_div(n, kBlock), kb = ceil_div(k, kBlock);
  Fp8Tensor out{Tensor::empty(DType::kF8E4M3, {n, k}), Tensor::empty(DType::kF32, {nb, kb})};
  auto* q = out.data.mutable_data<fp8_e4m3>();
  auto* s = out.scales.mutable_data<float>();
  ThreadPool::global().parallel_for(0, nb, [&](int64_t b0, int64_t b1, int) {
    std::vector<float> rows(static_cast<size_t>(kBlock * k));
    for (int64_t bn = b0; bn < b1; ++bn) {
      const int64_t n0 = bn * kBlock, rows_here = std::min(kBlock, n - n0);
      for (int64_t r = 0; r < rows_here; ++r) load_row(w, n0 + r, rows.data() + r * k);
      for (int64_t bk = 0; bk < kb; ++bk) {
        const int64_t k0 = bk * kBlock, len = std::min(kBlock, k - k0);
        float amax = 0;
        for (int64_t r = 0; r < rows_here; ++r) amax = std::max(amax, group_amax(rows.data() + r * k + k0, len));
        // Every row of the block is encoded with the block's amax, so all get the same scale.
        for (int64_t r = 0; r < rows_here; ++r)
          s[bn * kb + bk] = quantize_group(rows.data() + r * k + k0, len, amax, q + (n0 + r) * k + k0, format);
      }
    }
  });
  return out;
}

namespace {

void check_scaled(const Tensor& data, const Tensor& scales, int64_t rows_per_scale) {
  CACHALOT_CHECK_ARG(data.dim() == 2 && data.dtype() == DType::kF8E4M3 && data.is_contiguous(),
                     "dequantize: data must be contiguous F8_E4M3 [rows, K], got {}", data.description());
  const Dims want{ceil_div(data.size(0), rows_per_scale), ceil_div(data.size(1), kBlock)};
  CACHALOT_CHECK_ARG(scales.dtype() == DType::kF32 && scales.shape() == want && scales.is_contiguous(),
                     "dequantize: scales must be F32 {} for data {}, got {}", want.to_string(),
                     data.description(), scales.description());
}

// Rows [row0, row1) of data * scales into out (contiguous [row1 - row0, K]).
void dequantize_rows(const Tensor& data, const Tensor& scales, int64_t rows_per_scale, int64_t row0, int64_t row1,
                     float* out) {
  const int64_t k = data.size(1), kblocks = scales.size(1);
  const float* s = scales.data<float>();
  convert(data.data<fp8_e4m3>() + row0 * k, out, static_cast<size_t>((row1 - row0) * k));
  for (int64_t r = row0; r < row1; ++r) {
    float* o = out + (r - row0) * k;
    for (int64_t c = 0; c < k; ++c) o[c] *= s[(r / rows_per_scale) * kblocks + c / kBlock];
  }
}

Tensor dequantize(const Tensor& data, const Tensor& scales, int64_t rows_per_scale) {
  check_scaled(data, scales, rows_per_scale);
  Tensor out = Tensor::empty(DType::kF32, {data.size(0), data.size(1)});
  dequantize_rows(data, scales, rows_per_scale, 0, data.size(0), out.mutable_data<float>());
  return out;
}

}  // namespace

Tensor dequantize_activations(const Tensor& data, const Tensor& scales) { return dequantize(data, scales, 1); }
Tensor dequantize_weights(const Tensor& data, const Tensor& scales) { return dequantize(data, scales, kBlock); }

void dequantize_weight_rows(const Tensor& data, const Tensor& scales, int64_t row0, int64_t row1, float* out) {
  check_scaled(data, scales, kBlock);
  CACHALOT_CHECK_ARG(0 <= row0 && row0 <= row1 && row1 <= data.size(0), "dequantize: rows [{}, {}) outside [0, {})", row0,
                     row1, data.size(0));
  dequantize_rows(data, scales, kBlock, row0, row1, out);
}

}  // namespace cachalot::gemm
