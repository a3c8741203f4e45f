// The feed-forward part of a layer: a dense SwiGLU MLP, or DeepSeekMoE: a router choosing
// num_experts_per_tok of n_routed_experts per token, the chosen experts' outputs weighted and
// summed, plus the shared experts' output.
//
// Routing (route()):
//   scores = sigmoid(x W_gate^T) (V3) or softmax (V2); noaux_tc adds e_score_correction_bias
//   for choosing only; groups are scored by the sum of their top-2 (biased) scores (noaux_tc)
//   or their best score (group_limited_greedy); the best topk_group groups stay; the top-k
//   experts among them are chosen (in score order); their weights are the unbiased scores,
//   normalised to sum 1 if norm_topk_prob, times routed_scaling_factor.
// Experts (fast): the tokens' FP8 rows are gathered by expert and run through the grouped
// contiguous FP8 GEMMs (gate, up, down), all experts of the layer in one call each.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "gemm/packed_weights.h"
#include "model/config.h"
#include "model/numerics.h"
#include "model/weights.h"

namespace cachalot::model {

struct Routing {
  int64_t k = 0;
  std::vector<int32_t> experts;  // [tokens][k], in score order
  std::vector<float> weights;    // [tokens][k]
};

// y = down(silu(gate(x)) * up(x)); x, y F32 [rows, hidden].
Tensor mlp_forward(const MlpWeights& w, const Tensor& x, Precision precision);
void prepare_mlp(MlpWeights& w, Precision precision);

class MoeLayer {
 public:
  MoeLayer() = default;
  MoeLayer(const ModelConfig& config, MoeWeights& weights, Precision precision);

  // router_logits F32 [tokens, n_routed_experts] -> the routing of each token.
  static Routing route(const ModelConfig& config, const Tensor& router_logits, const Tensor& score_bias);

  // x F32 [tokens, hidden] (normalised) -> F32 [tokens, hidden]; the routing is returned in *routing if given.
  Tensor forward(const Tensor& x, Routing* routing = nullptr) const;

 private:
  // Expert by expert (exact mode, and BF16 experts in fast mode).
  Tensor run_experts_each(const Tensor& x, const Routing& routing) const;
  Tensor run_experts_fast(const Tensor& x, const Routing& routing) const;

  const ModelConfig* config_ = nullptr;
  MoeWeights* w_ = nullptr;
  Precision precision_ = Precision::kExact;
  bool grouped_ = false;                         // fast path over packed FP8 experts
  gemm::PackedWeights gate_, up_, down_;         // [experts, ...] when grouped_
};

}  // namespace cachalot::model
