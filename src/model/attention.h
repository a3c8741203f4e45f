// Multi-head latent attention (MLA) of one layer, in the absorbed form for both prefill and
// decode: queries are projected into the latent space (q_nope x W_UK per head), attention runs
// multi-query over the cached latent + roped key (576 values per token for V3, shared by all
// heads), and the latent output is expanded by W_UV per head before o_proj.
//   exact: FP32 everywhere, the cache in FP32, attention computed directly (FP32 softmax).
//   fast:  W_UK / W_UV dequantized to BF16 (as DeepSeek's inference code does) in per-head
//          grouped GEMMs; attention through mla::mla_decode over the BF16 or FP8 cache; prompt
//          tokens go through it in query chunks of 64 with causal masking (bottom-right aligned).
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "gemm/packed_weights.h"
#include "mla/paged_kv_cache.h"
#include "model/batch_layout.h"
#include "model/config.h"
#include "model/numerics.h"
#include "model/rope.h"
#include "model/weights.h"

namespace cachalot::model {

inline constexpr int64_t kPrefillQueryChunk = 64;

class Attention {
 public:
  // Prepares the weights for `precision` (packs the projections, splits kv_b into W_UK / W_UV).
  Attention(const ModelConfig& config, AttentionWeights& weights, Precision precision);

  // x: F32 [rows, hidden], already normalised. Writes the rows' latent + roped key into `cache`,
  // then returns the attention output F32 [rows, hidden] (after o_proj).
  Tensor forward(const Tensor& x, const BatchLayout& layout, mla::PagedKvCache& cache) const;

 private:
  Tensor project_queries(const Tensor& x, const BatchLayout& layout) const;  // [rows, H, qk], roped
  void write_cache(const Tensor& x, const BatchLayout& layout, mla::PagedKvCache& cache) const;
  Tensor absorb_queries(const Tensor& q) const;                // [rows, H, latent + rope]
  Tensor attend_exact(const Tensor& q_latent, const BatchLayout& layout, const mla::PagedKvCache& cache) const;
  Tensor attend_fast(const Tensor& q_latent, const BatchLayout& layout, const mla::PagedKvCache& cache) const;
  Tensor expand_values(const Tensor& o_latent) const;          // [rows, H * v]

  const ModelConfig* config_;
  AttentionWeights* w_;
  Precision precision_;
  Rope rope_;
  Tensor kv_b_f32_;            // exact: kv_b dequantized [H * (nope + v), latent]
  gemm::PackedWeights w_uk_;   // fast: BF16 [H][latent][nope] (q_nope -> latent)
  gemm::PackedWeights w_uv_;   // fast: BF16 [H][v][latent]   (latent -> v)
};

}  // namespace cachalot::model
