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
//
// Expert parallelism: a MoeLayer may hold some of the experts (an EP rank's slots: expert ids
// in slot order, an expert twice when EPLB put two replicas on one rank); the model then routes,
// dispatches the rows to the ranks (FP8 in fast mode, as DeepSeek does), runs experts_forward on
// what arrived with slot ids local to the rank, and combines.
#pragma once

#include <cstdint>
#include <span>
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

// counts[e] += the tokens of `routing` that chose expert e (the loads EPLB balances).
void count_expert_tokens(const Routing& routing, std::vector<int64_t>& counts);

// y = down(silu(gate(x)) * up(x)); x, y F32 [rows, hidden].
Tensor mlp_forward(const MlpWeights& w, const Tensor& x, Precision precision);
void prepare_mlp(MlpWeights& w, Precision precision);


class MoeLayer {
 public:
  MoeLayer() = default;
  // held: the routed experts in slot order (empty: all of them, slot e = expert e).
  MoeLayer(const ModelConfig& config, MoeWeights& weights, Precision precision, std::vector<int32_t> held = {});

  // router_logits F32 [tokens, n_routed_experts] -> the routing of each token.
  static Routing route(const ModelConfig& config, const Tensor& router_logits, const Tensor& score_bias);
  // The router on x F32 [tokens, hidden] (normalised), then route().
  Routing route_tokens(const Tensor& x) const;

  // x F32 [tokens, hidden] (normalised) -> F32 [tokens, hidden]; the routing is returned in *routing if given.
  Tensor forward(const Tensor& x, Routing* routing = nullptr) const;

  // sum_k w_k * expert_k(x) over the experts this layer holds; routing ids are its slots, -1
  // for experts held elsewhere. F32 [tokens, hidden].
  Tensor experts_forward(const Tensor& x, const Routing& local) const;
  // The same on rows already quantized to FP8 with 1x128 scales (takes_fp8() layers only).
  Tensor experts_forward(const Tensor& x_fp8, const Tensor& x_scales, const Routing& local) const;
  // The masked layout of low-latency dispatch: x [slots, M, hidden] (FP8 with
  // scales [.., .., ceil(hidden/128)] when takes_fp8(), else F32), of which the first counts[e]
  // rows of expert e are valid. Writes each valid row's expert output (unweighted) into `out`
  // [experts, M, hidden], F32 or BF16 (the EP combine buffer); other rows are left as they were.
  void experts_forward_masked(const Tensor& x, const Tensor& scales, std::span<const int32_t> counts, Tensor& out) const;
  // True when experts run as FP8 GEMMs on quantized rows (fast mode, FP8 experts).
  bool takes_fp8() const { return grouped_; }
  // The shared experts' output F32 [tokens, hidden]; undefined when the layer has none.
  Tensor shared_forward(const Tensor& x) const;
  // The layer's output from the routed experts' sum y and shared_forward's result: y + shared
  // (when defined), rounded as the precision rounds activations. In place.
  void finish_output(Tensor& y, const Tensor& shared) const;
  const std::vector<int32_t>& held() const { return held_; }

 private:
  // Expert by expert (exact mode, and BF16 experts in fast mode).
  Tensor run_experts_each(const Tensor& x, const Routing& routing) const;

  const ModelConfig* config_ = nullptr;
  MoeWeights* w_ = nullptr;
  Precision precision_ = Precision::kExact;
  std::vector<int32_t> held_;                    // slot -> expert
  bool grouped_ = false;                         // fast path over packed FP8 experts
  gemm::PackedWeights gate_, up_, down_;         // [slots, ...] when grouped_
};

}  // namespace cachalot::model
