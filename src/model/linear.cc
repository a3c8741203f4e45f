#include "model/linear.h"

#include <cblas.h>

#include <algorithm>
#include <vector>

#include "core/convert.h"
#include "core/error.h"
#include "core/trace.h"
#include "gemm/gemm.h"
#include "gemm/quantize.h"

namespace cachalot::model {

Linear::Linear(std::string name, Tensor weight, Tensor scale_inv)
    : name_(std::move(name)), weight_(std::move(weight)), scale_inv_(std::move(scale_inv)) {
  CACHALOT_ASSERT(weight_.dim() == 2);
  CACHALOT_ASSERT(is_fp8() == scale_inv_.defined());
}

void Linear::prepare(Precision precision, bool keep_fp32_output) {
  // Expert-parallel ranks share the router and shared experts: pack them once.
  if (prepared_ && precision_ == precision && keep_fp32_output_ == keep_fp32_output) return;
  prepared_ = true;
  precision_ = precision;
  keep_fp32_output_ = keep_fp32_output;
  if (precision != Precision::kFast) return;
  if (is_fp8()) {
    packed_ = gemm::pack_fp8_weights(weight_, scale_inv_);
  } else if (weight_.dtype() == DType::kBF16) {
    packed_ = gemm::pack_bf16_weights(weight_);
  } else {  // F32 weights: the fast path runs them in BF16
    Tensor rounded = Tensor::empty(DType::kBF16, weight_.shape());
    convert(weight_.data<float>(), rounded.mutable_data<bf16>(), static_cast<size_t>(weight_.numel()));
    packed_ = gemm::pack_bf16_weights(rounded);
  }
}

void Linear::dequantize_rows(int64_t row0, int64_t row1, float* out) const {
  const int64_t in = in_features(), rows = row1 - row0;
  if (weight_.dtype() == DType::kF32) {
    std::copy_n(weight_.data<float>() + row0 * in, rows * in, out);
  } else if (weight_.dtype() == DType::kBF16) {
    convert(weight_.data<bf16>() + row0 * in, out, static_cast<size_t>(rows * in));
  } else {
    gemm::dequantize_weight_rows(weight_, scale_inv_, row0, row1, out);
  }
}

Tensor Linear::dequantized() const {
  Tensor out = Tensor::empty(DType::kF32, {out_features(), in_features()});
  dequantize_rows(0, out_features(), out.mutable_data<float>());
  return out;
}

void Linear::forward(const Tensor& x, Tensor& y) const {
  const int64_t m = x.size(0), in = in_features(), out = out_features();
  CACHALOT_CHECK_ARG(x.dtype() == DType::kF32 && x.dim() == 2 && x.size(1) == in && x.is_contiguous(),
                     "{}: input must be contiguous F32 [m, {}], got {}", name_, in, x.description());
  CACHALOT_CHECK_ARG(y.dtype() == DType::kF32 && y.shape() == (Dims{m, out}) && y.is_contiguous(),
                     "{}: output must be contiguous F32 [{}, {}], got {}", name_, m, out, y.description());
  if (m == 0) return;
  trace::Span span("linear", "model");
  span.arg("m", m).arg("n", out).arg("k", in);
  if (precision_ == Precision::kExact) {
    // FP32 GEMM on 256-row slices of the dequantized weights.
    constexpr int64_t kRows = 256;
    std::vector<float> w(static_cast<size_t>(std::min(kRows, out) * in));
    for (int64_t r0 = 0; r0 < out; r0 += kRows) {
      const int64_t rows = std::min(kRows, out - r0);
      dequantize_rows(r0, r0 + rows, w.data());
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(m), static_cast<blasint>(rows),
                  static_cast<blasint>(in), 1.0f, x.data<float>(), static_cast<blasint>(in), w.data(),
                  static_cast<blasint>(in), 0.0f, y.mutable_data<float>() + r0, static_cast<blasint>(out));
    }
    return;
  }
  CACHALOT_ASSERT(packed_.groups() == 1);
  if (packed_.format() == gemm::PackedWeights::Format::kFp8) {
    const gemm::Fp8Tensor a = gemm::quantize_activations(x);
    gemm::gemm_fp8_nt(a.data, a.scales, packed_, y);
  } else {
    Tensor a = Tensor::empty(DType::kBF16, {m, in});
    convert(x.data<float>(), a.mutable_data<bf16>(), static_cast<size_t>(m * in));
    gemm::gemm_bf16_nt(a, packed_, y);
  }
  if (!keep_fp32_output_) round_activations(Precision::kFast, y);
}

Tensor Linear::forward(const Tensor& x) const {
  Tensor y = Tensor::empty(DType::kF32, {x.size(0), out_features()});
  forward(x, y);
  return y;
}

}  // namespace cachalot::model
