// One projection of the model, y[m, out] = x[m, in] W^T, with W [out, in] straight from the
// checkpoint: FP8 E4M3 with one FP32 scale per 128x128 block (weight_scale_inv), or BF16.
//   exact: W dequantized to FP32 (128 rows at a time, never whole), FP32 products (OpenBLAS).
//   fast:  W packed once (prepare) for the gemm library; FP8 weights meet x quantized to FP8
//          with 1x128 scales, BF16 weights meet x rounded to BF16; FP32 accumulation; y rounded
//          to BF16 unless the layer keeps FP32 outputs (router scores, logits).
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "gemm/packed_weights.h"
#include "model/numerics.h"

namespace cachalot::model {

class Linear {
 public:
  Linear() = default;
  // weight F8_E4M3 [out, in] with scale_inv F32 [ceil(out/128), ceil(in/128)], or BF16/F32
  // [out, in] with an undefined scale_inv.
  Linear(std::string name, Tensor weight, Tensor scale_inv);

  const std::string& name() const { return name_; }
  int64_t in_features() const { return weight_.size(1); }
  int64_t out_features() const { return weight_.size(0); }
  bool is_fp8() const { return weight_.dtype() == DType::kF8E4M3; }
  const Tensor& weight() const { return weight_; }
  const Tensor& scale_inv() const { return scale_inv_; }

  // Packs the weights for the fast path (a no-op for exact). keep_fp32_output: y is not rounded.
  void prepare(Precision precision, bool keep_fp32_output = false);
  Precision precision() const { return precision_; }

  // x F32 [m, in] (contiguous rows) -> y F32 [m, out].
  void forward(const Tensor& x, Tensor& y) const;
  Tensor forward(const Tensor& x) const;

  // Rows [row0, row1) of W as FP32 (value = e4m3 * scale_inv), into out [(row1 - row0) * in].
  void dequantize_rows(int64_t row0, int64_t row1, float* out) const;
  Tensor dequantized() const;  // F32 [out, in]
  size_t weight_bytes() const { return weight_.nbytes() + (scale_inv_.defined() ? scale_inv_.nbytes() : 0); }

 private:
  std::string name_;
  Tensor weight_, scale_inv_;
  Precision precision_ = Precision::kExact;
  bool prepared_ = false;
  bool keep_fp32_output_ = false;
  gemm::PackedWeights packed_;
};

}  // namespace cachalot::model
