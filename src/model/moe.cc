#include "model/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <span>

#include "core/convert.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "core/trace.h"
#include "core/vector_ops.h"
#include "gemm/gemm.h"
#include "gemm/quantize.h"

namespace cachalot::model {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// silu(gate) * up, element-wise into gate (each step rounded in fast mode, as BF16 tensors are).
void swiglu(Tensor& gate, const Tensor& up, Precision precision) {
  float* g = gate.mutable_data<float>();
  const float* u = up.data<float>();
  const int64_t n = gate.numel();
  for (int64_t i = 0; i < n; ++i) g[i] = silu(g[i]);
  round_activations(precision, g, n);
  for (int64_t i = 0; i < n; ++i) g[i] *= u[i];
  round_activations(precision, g, n);
}

// Indices of the `k` largest values (descending; ties to the lower index).
void top_k(const float* v, int64_t n, int64_t k, int32_t* out) {
  std::vector<int32_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int32_t a, int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
  std::copy_n(idx.begin(), k, out);
}

}  // namespace

void prepare_mlp(MlpWeights& w, Precision precision) {
  w.gate.prepare(precision);
  w.up.prepare(precision);
  w.down.prepare(precision);
}

Tensor mlp_forward(const MlpWeights& w, const Tensor& x, Precision precision) {
  Tensor g = w.gate.forward(x);
  const Tensor u = w.up.forward(x);
  swiglu(g, u, precision);
  return w.down.forward(g);
}

void count_expert_tokens(const Routing& routing, std::vector<int64_t>& counts) {
  for (const int32_t e : routing.experts)
    if (e >= 0) ++counts[static_cast<size_t>(e)];
}

MoeLayer::MoeLayer(const ModelConfig& config, MoeWeights& weights, Precision precision, std::vector<int32_t> held)
    : config_(&config), w_(&weights), precision_(precision), held_(std::move(held)) {
  const int64_t experts = static_cast<int64_t>(w_->experts.size());
  if (held_.empty()) {
    held_.resize(static_cast<size_t>(experts));
    std::iota(held_.begin(), held_.end(), 0);
  }
  for (const int32_t e : held_)
    CACHALOT_CHECK_ARG(e >= 0 && e < experts, "moe: expert {} outside the layer's {} experts", e, experts);
  w_->router.prepare(precision, /*keep_fp32_output=*/true);
  if (w_->has_shared) prepare_mlp(w_->shared, precision);
  grouped_ = precision == Precision::kFast;
  for (const int32_t e : held_) {
    const MlpWeights& m = w_->experts[e];
    grouped_ = grouped_ && m.gate.is_fp8() && m.up.is_fp8() && m.down.is_fp8();
  }
  if (grouped_) {
    // The held experts packed together: one grouped GEMM per projection.
    std::vector<Tensor> b[3], s[3];
    for (const int32_t id : held_) {
      const MlpWeights& e = w_->experts[id];
      int i = 0;
      for (const Linear* l : {&e.gate, &e.up, &e.down}) {
        b[i].push_back(l->weight());
        s[i].push_back(l->scale_inv());
        ++i;
      }
    }
    gate_ = gemm::pack_fp8_weights(b[0], s[0]);
    up_ = gemm::pack_fp8_weights(b[1], s[1]);
    down_ = gemm::pack_fp8_weights(b[2], s[2]);
  } else {
    for (const int32_t e : held_) prepare_mlp(w_->experts[e], precision);
  }
}

Routing MoeLayer::route(const ModelConfig& c, const Tensor& logits, const Tensor& bias) {
  const int64_t tokens = logits.size(0), experts = c.n_routed_experts, k = c.num_experts_per_tok;
  const int64_t per_group = experts / c.n_group;
  Routing r;
  r.k = k;
  r.experts.resize(static_cast<size_t>(tokens * k));
  r.weights.resize(static_cast<size_t>(tokens * k));
  std::vector<float> scores(static_cast<size_t>(experts)), choice(static_cast<size_t>(experts)),
      group_score(static_cast<size_t>(c.n_group));
  std::vector<int32_t> groups(static_cast<size_t>(c.n_group));
  for (int64_t t = 0; t < tokens; ++t) {
    const float* l = logits.data<float>() + t * experts;
    if (c.scoring_func == ScoringFunc::kSigmoid) {
      for (int64_t e = 0; e < experts; ++e) scores[e] = 1.0f / (1.0f + std::exp(-l[e]));
    } else {
      const float max = *std::max_element(l, l + experts);
      float sum = 0;
      for (int64_t e = 0; e < experts; ++e) sum += scores[e] = std::exp(l[e] - max);
      for (float& s : scores) s /= sum;
    }
    for (int64_t e = 0; e < experts; ++e) choice[e] = scores[e] + (bias.defined() ? bias.data<float>()[e] : 0.0f);
    if (c.n_group > 1 && c.topk_method != TopkMethod::kGreedy) {
      for (int64_t g = 0; g < c.n_group; ++g) {
        const float* v = choice.data() + g * per_group;
        if (c.topk_method == TopkMethod::kNoauxTc) {
          int32_t best[2];
          top_k(v, per_group, 2, best);
          group_score[g] = v[best[0]] + v[best[1]];
        } else {
          group_score[g] = *std::max_element(v, v + per_group);
        }
      }
      top_k(group_score.data(), c.n_group, c.topk_group, groups.data());
      std::vector<bool> keep(static_cast<size_t>(c.n_group), false);
      for (int64_t i = 0; i < c.topk_group; ++i) keep[groups[i]] = true;
      for (int64_t e = 0; e < experts; ++e)
        if (!keep[e / per_group]) choice[e] = kNegInf;
    }
    int32_t* chosen = r.experts.data() + t * k;
    float* w = r.weights.data() + t * k;
    top_k(choice.data(), experts, k, chosen);
    float sum = 0;
    for (int64_t i = 0; i < k; ++i) sum += w[i] = scores[chosen[i]];
    const float norm = c.norm_topk_prob && k > 1 ? 1.0f / (sum + 1e-20f) : 1.0f;
    for (int64_t i = 0; i < k; ++i) w[i] = w[i] * norm * static_cast<float>(c.routed_scaling_factor);
  }
  return r;
}

Tensor MoeLayer::run_experts_each(const Tensor& x, const Routing& routing) const {
  const int64_t tokens = x.size(0), hidden = x.size(1), k = routing.k;
  Tensor y = Tensor::zeros(DType::kF32, {tokens, hidden});
  for (int64_t e = 0; e < static_cast<int64_t>(held_.size()); ++e) {
    std::vector<std::pair<int64_t, float>> rows;  // (token, weight)
    for (int64_t i = 0; i < tokens * k; ++i)
      if (routing.experts[i] == e) rows.emplace_back(i / k, routing.weights[i]);
    if (rows.empty()) continue;
    Tensor xe = Tensor::empty(DType::kF32, {static_cast<int64_t>(rows.size()), hidden});
    for (size_t i = 0; i < rows.size(); ++i)
      std::copy_n(x.data<float>() + rows[i].first * hidden, hidden, xe.mutable_data<float>() + i * hidden);
    const Tensor ye = mlp_forward(w_->experts[held_[e]], xe, precision_);
    for (size_t i = 0; i < rows.size(); ++i) {
      float* dst = y.mutable_data<float>() + rows[i].first * hidden;
      const float* src = ye.data<float>() + i * hidden;
      for (int64_t j = 0; j < hidden; ++j) dst[j] += rows[i].second * src[j];
    }
  }
  return y;
}

Tensor MoeLayer::experts_forward(const Tensor& x, const Routing& local) const {
  if (!grouped_) return run_experts_each(x, local);
  const gemm::Fp8Tensor q = gemm::quantize_activations(x);
  return experts_forward(q.data, q.scales, local);
}

Tensor MoeLayer::experts_forward(const Tensor& xq, const Tensor& xs, const Routing& routing) const {
  CACHALOT_ASSERT(grouped_);
  const int64_t tokens = xq.size(0), hidden = xq.size(1), k = routing.k, kb = gemm::ceil_div(hidden, 128);
  Tensor y = Tensor::zeros(DType::kF32, {tokens, hidden});
  // (token, slot) pairs of held experts, sorted by expert: rows of one expert become one problem
  // of the grouped GEMM.
  std::vector<int64_t> order;
  for (int64_t i = 0; i < tokens * k; ++i)
    if (routing.experts[i] >= 0) order.push_back(i);
  if (order.empty()) return y;
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return routing.experts[a] < routing.experts[b]; });
  const int64_t pairs = static_cast<int64_t>(order.size());
  Tensor a = Tensor::empty(DType::kF8E4M3, {pairs, hidden});
  Tensor sa = Tensor::empty(DType::kF32, {pairs, kb});
  Tensor m_indices = Tensor::empty(DType::kI32, {pairs});
  for (int64_t r = 0; r < pairs; ++r) {
    const int64_t t = order[r] / k;
    std::memcpy(a.mutable_data<fp8_e4m3>() + r * hidden, xq.data<fp8_e4m3>() + t * hidden, static_cast<size_t>(hidden));
    std::copy_n(xs.data<float>() + t * kb, kb, sa.mutable_data<float>() + r * kb);
    m_indices.mutable_data<int32_t>()[r] = routing.experts[order[r]];
  }
  CACHALOT_ASSERT(static_cast<int64_t>(held_.size()) == gate_.groups());
  const int64_t inter = gate_.n();
  Tensor g = Tensor::empty(DType::kF32, {pairs, inter}), u = Tensor::empty(DType::kF32, {pairs, inter});
  gemm::gemm_fp8_grouped_contiguous(a, sa, gate_, m_indices, g);
  gemm::gemm_fp8_grouped_contiguous(a, sa, up_, m_indices, u);
  round_activations(precision_, g);
  round_activations(precision_, u);
  swiglu(g, u, precision_);
  const gemm::Fp8Tensor hq = gemm::quantize_activations(g);
  Tensor d = Tensor::empty(DType::kF32, {pairs, hidden});
  gemm::gemm_fp8_grouped_contiguous(hq.data, hq.scales, down_, m_indices, d);
  round_activations(precision_, d);
  for (int64_t r = 0; r < pairs; ++r) {
    const int64_t t = order[r] / k;
    const float w = routing.weights[order[r]];
    float* dst = y.mutable_data<float>() + t * hidden;
    const float* src = d.data<float>() + r * hidden;
    for (int64_t j = 0; j < hidden; ++j) dst[j] += w * src[j];
  }
  return y;
}

void MoeLayer::experts_forward_masked(const Tensor& x, const Tensor& scales, std::span<const int32_t> counts,
                                      Tensor& out) const {
  const int64_t experts = x.size(0), m = x.size(1), hidden = x.size(2);
  CACHALOT_ASSERT(experts == static_cast<int64_t>(held_.size()) && static_cast<int64_t>(counts.size()) == experts);
  const Dims out_shape{experts, m, hidden};
  CACHALOT_CHECK_ARG(out.is_contiguous() && (out.dtype() == DType::kF32 || out.dtype() == DType::kBF16) &&
                         out.shape() == out_shape,
                     "experts_forward_masked: out must be contiguous F32 or BF16 [{}, {}, {}], got {}", experts, m, hidden,
                     out.description());
  auto valid = [&](Tensor& t, int64_t e) { return t.select(0, e).slice(0, 0, counts[e]); };
  if (!grouped_) {
    // Expert by expert on its valid rows (exact mode, BF16 experts).
    for (int64_t e = 0; e < experts; ++e) {
      if (counts[e] == 0) continue;
      const Tensor ye = mlp_forward(w_->experts[held_[e]], x.select(0, e).slice(0, 0, counts[e]), precision_);
      Tensor oe = valid(out, e);
      if (out.dtype() == DType::kF32)
        std::copy_n(ye.data<float>(), ye.numel(), oe.mutable_data<float>());
      else
        convert(ye.data<float>(), oe.mutable_data<bf16>(), static_cast<size_t>(ye.numel()));
    }
    return;
  }
  // The masked FP8 GEMMs compute only the valid rows of each expert (DeepGEMM's decode layout).
  Tensor masked = Tensor::empty(DType::kI32, {experts});
  std::copy(counts.begin(), counts.end(), masked.mutable_data<int32_t>());
  const int64_t inter = gate_.n(), kb = gemm::ceil_div(inter, 128);
  Tensor g = Tensor::empty(DType::kF32, {experts, m, inter}), u = Tensor::empty(DType::kF32, {experts, m, inter});
  gemm::gemm_fp8_grouped_masked(x, scales, gate_, masked, g);
  gemm::gemm_fp8_grouped_masked(x, scales, up_, masked, u);
  Tensor hq = Tensor::empty(DType::kF8E4M3, {experts, m, inter}), hs = Tensor::empty(DType::kF32, {experts, m, kb});
  for (int64_t e = 0; e < experts; ++e) {
    if (counts[e] == 0) continue;
    Tensor ge = valid(g, e), ue = valid(u, e);
    round_activations(precision_, ge);
    round_activations(precision_, ue);
    swiglu(ge, ue, precision_);
    const gemm::Fp8Tensor q = gemm::quantize_activations(ge);
    std::copy_n(q.data.data<fp8_e4m3>(), q.data.numel(), valid(hq, e).mutable_data<fp8_e4m3>());
    std::copy_n(q.scales.data<float>(), q.scales.numel(), valid(hs, e).mutable_data<float>());
  }
  // BF16 output is rounded by the GEMM, as round_activations would round it.
  gemm::gemm_fp8_grouped_masked(hq, hs, down_, masked, out);
  if (out.dtype() == DType::kF32)
    for (int64_t e = 0; e < experts; ++e) {
      if (counts[e] == 0) continue;
      Tensor oe = valid(out, e);
      round_activations(precision_, oe);
    }
}

Tensor MoeLayer::shared_forward(const Tensor& x) const {
  return w_->has_shared ? mlp_forward(w_->shared, x, precision_) : Tensor();
}

void MoeLayer::finish_output(Tensor& y, const Tensor& shared) const {
  if (shared.defined() && shared.numel() > 0)
    add_scaled(y.mutable_data<float>(), shared.data<float>(), 1.0f, static_cast<size_t>(y.numel()));
  round_activations(precision_, y);
}

Routing MoeLayer::route_tokens(const Tensor& x) const {
  return route(*config_, w_->router.forward(x), w_->score_bias);
}

Tensor MoeLayer::forward(const Tensor& x, Routing* routing_out) const {
  trace::Span span("moe", "model");
  span.arg("tokens", x.size(0));
  CACHALOT_ASSERT(static_cast<int64_t>(held_.size()) == static_cast<int64_t>(w_->experts.size()));  // all, in order
  Routing routing = route_tokens(x);
  Tensor y = experts_forward(x, routing);
  finish_output(y, shared_forward(x));
  if (routing_out != nullptr) *routing_out = std::move(routing);
  return y;
}

}  // namespace cachalot::model
