// Multi-head latent attention (MLA) of one layer. Each layer writes the new tokens' latent +
// roped key into the cache, then attends for each sequence in one of two forms
// (attention_cost.h):
//   absorbed: queries projected into the latent space (q_nope x W_UK per head), attention
//             multi-query over the cached latent + roped key (576 values per token for V3,
//             shared by all heads), the latent output expanded by W_UV per head;
//   expanded: the sequence's cached latents expanded by kv_b into per-head keys and values,
//             then multi-head attention (fast mode only).
//   exact: FP32 everywhere, the cache in FP32, absorbed, attention computed directly (FP32
//          softmax).
//   fast:  per sequence the form with fewer FLOPs (decode steps absorbed, prompts expanded)
//          unless the model forces one. Absorbed: W_UK / W_UV dequantized to BF16 (as
//          DeepSeek's inference code does) in per-head grouped GEMMs, attention through
//          mla::mla_decode over the BF16 or FP8 cache (prompt rows in query chunks of 64,
//          causal, bottom-right aligned). Expanded: kv_b in BF16 on the cached latents (as the
//          cache holds them, FP8 caches dequantized), a few heads at a time so the expanded
//          keys stay within kExpandedKvBytes, attention through mla::mla_prefill.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "core/tensor.h"
#include "gemm/packed_weights.h"
#include "mla/paged_kv_cache.h"
#include "model/attention_cost.h"
#include "model/batch_layout.h"
#include "model/config.h"
#include "model/numerics.h"
#include "model/rope.h"
#include "model/weights.h"

namespace cachalot::model {

inline constexpr int64_t kPrefillQueryChunk = 64;
// Bound on the expanded keys and values (BF16) held at once for one sequence.
inline constexpr int64_t kExpandedKvBytes = int64_t{32} << 20;

class Attention {
 public:
  // Prepares the weights for `precision` (packs the projections, splits kv_b into W_UK / W_UV,
  // packs kv_b for the expanded form). forced_form: every sequence in that form (fast mode).
  Attention(const ModelConfig& config, AttentionWeights& weights, Precision precision,
            std::optional<AttentionForm> forced_form = std::nullopt);

  // x: F32 [rows, hidden], already normalised. Writes the rows' latent + roped key into `cache`,
  // then returns the attention output F32 [rows, hidden] (after o_proj).
  Tensor forward(const Tensor& x, const BatchLayout& layout, mla::PagedKvCache& cache) const;

  // The bound on expanded keys and values held at once (tests shrink it to split by heads).
  void set_expanded_kv_bytes(int64_t bytes) { expanded_kv_bytes_ = bytes; }

 private:
  Tensor project_queries(const Tensor& x, const BatchLayout& layout) const;  // [rows, H, qk], roped
  void write_cache(const Tensor& x, const BatchLayout& layout, mla::PagedKvCache& cache) const;
  Tensor absorb_queries(const Tensor& q) const;                // [rows, H, latent + rope]
  Tensor attend_exact(const Tensor& q_latent, const BatchLayout& layout, const mla::PagedKvCache& cache) const;
  Tensor attend_fast(const Tensor& q_latent, const BatchLayout& layout, const mla::PagedKvCache& cache) const;
  Tensor expand_values(const Tensor& o_latent) const;          // [rows, H * v]
  Tensor attend_absorbed(const Tensor& q, const BatchLayout& layout, const mla::PagedKvCache& cache) const;
  // Writes the value rows [rows, H * v] of sequences `seqs`.
  void attend_expanded(const Tensor& q, const BatchLayout& layout, std::span<const int64_t> seqs,
                       const mla::PagedKvCache& cache, Tensor& values) const;

  const ModelConfig* config_;
  AttentionWeights* w_;
  Precision precision_;
  std::optional<AttentionForm> forced_form_;
  int64_t expanded_kv_bytes_ = kExpandedKvBytes;
  Rope rope_;
  Tensor kv_b_f32_;            // exact: kv_b dequantized [H * (nope + v), latent]
  gemm::PackedWeights w_uk_;   // fast: BF16 [H][latent][nope] (q_nope -> latent)
  gemm::PackedWeights w_uv_;   // fast: BF16 [H][v][latent]   (latent -> v)
  gemm::PackedWeights kv_b_;   // fast: BF16 [H * (nope + v), latent] (latent -> nope keys, values)
};

}  // namespace cachalot::model
