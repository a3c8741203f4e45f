// References for the GEMM tests: random FP8 operands, the scalar two-level accumulation in the
// kernels' contract order (bit-exact target), and float64 products (accuracy target).
#pragma once

#include <cmath>
#include <random>
#include <vector>

#include "core/convert.h"
#include "core/tensor.h"
#include "gemm/quantize.h"

namespace cachalot::gemm::testing {

// Normal(0, 1) values, quantized (rows of 1x128 groups or 128x128 blocks).
inline Tensor random_f32(int64_t rows, int64_t cols, uint32_t seed, float scale = 1.0f) {
  Tensor t = Tensor::empty(DType::kF32, {rows, cols});
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  for (int64_t i = 0; i < rows * cols; ++i) t.mutable_data<float>()[i] = dist(rng);
  return t;
}

inline float fp8_value(const Tensor& t, int64_t r, int64_t c) {
  return fp8_e4m3_to_float(t.data<fp8_e4m3>()[r * t.stride(0) + c]);
}

// D[m][n] (FP32, before any C or output rounding) in the contract's order (cpu/kernels.h).
inline std::vector<float> same_order_reference(const Tensor& a, const Tensor& sa, const Tensor& b, const Tensor& sb) {
  const int64_t m = a.size(0), n = b.size(0), k = a.size(1), kb_count = ceil_div(k, kBlock);
  std::vector<float> out(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float acc = 0;
      for (int64_t kb = 0; kb < kb_count; ++kb) {
        float p = 0;
        for (int64_t pair = 0; pair < 64; ++pair) {
          const int64_t k0 = kb * 128 + 2 * pair, k1 = k0 + 1;
          const float a0 = k0 < k ? fp8_value(a, i, k0) : 0, b0 = k0 < k ? fp8_value(b, j, k0) : 0;
          const float a1 = k1 < k ? fp8_value(a, i, k1) : 0, b1 = k1 < k ? fp8_value(b, j, k1) : 0;
          p += a1 * b1;
          p += a0 * b0;
        }
        const float s = sa.data<float>()[i * kb_count + kb] * sb.data<float>()[(j / 128) * kb_count + kb];
        acc += s * p;
      }
      out[i * n + j] = acc;
    }
  return out;
}

// float64 A x B^T of two F32 matrices.
inline std::vector<double> double_reference(const Tensor& a, const Tensor& b) {
  const int64_t m = a.size(0), n = b.size(0), k = a.size(1);
  std::vector<double> out(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t c = 0; c < k; ++c) s += double(a.data<float>()[i * k + c]) * double(b.data<float>()[j * k + c]);
      out[i * n + j] = s;
    }
  return out;
}

// DeepGEMM's calc_diff: 1 - 2 sum(xy) / sum(x^2 + y^2), in double.
template <typename X, typename Y>
double calc_diff(const X& x, const Y& y, size_t n) {
  double xy = 0, xx = 0;
  for (size_t i = 0; i < n; ++i) {
    xy += double(x[i]) * double(y[i]);
    xx += double(x[i]) * double(x[i]) + double(y[i]) * double(y[i]);
  }
  return xx == 0 ? 0 : 1 - 2 * xy / xx;
}

// ||x - y|| / ||y||.
template <typename X, typename Y>
double relative_norm_error(const X& x, const Y& y, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num += (double(x[i]) - double(y[i])) * (double(x[i]) - double(y[i]));
    den += double(y[i]) * double(y[i]);
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

}  // namespace cachalot::gemm::testing
