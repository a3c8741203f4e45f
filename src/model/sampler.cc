#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace cachalot::model {

void validate(const SamplingParams& p) {
  CACHALOT_CHECK_ARG(std::isfinite(p.temperature) && p.temperature >= 0.0f && p.temperature <= 100.0f,
                     "temperature must be in [0, 100], got {}", p.temperature);
  CACHALOT_CHECK_ARG(p.top_p > 0.0f && p.top_p <= 1.0f, "top_p must be in (0, 1], got {}", p.top_p);
  CACHALOT_CHECK_ARG(p.top_k >= 0, "top_k must be >= 0 (0: no limit), got {}", p.top_k);
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) { validate(params); }

int32_t Sampler::sample(const float* logits, int64_t vocab) {
  if (params_.temperature == 0.0f || params_.top_k == 1)
    return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  order_.resize(static_cast<size_t>(vocab));
  std::iota(order_.begin(), order_.end(), 0);
  const int64_t k = params_.top_k > 0 ? std::min(params_.top_k, vocab) : vocab;
  auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::partial_sort(order_.begin(), order_.begin() + k, order_.end(), by_logit);
  // Softmax over the k candidates, in descending order.
  probs_.resize(static_cast<size_t>(k));
  const double max = logits[order_[0]];
  double sum = 0;
  for (int64_t i = 0; i < k; ++i) sum += probs_[i] = std::exp((logits[order_[i]] - max) / params_.temperature);
  // Nucleus: the shortest prefix reaching top_p of the mass.
  int64_t keep = k;
  if (params_.top_p < 1.0f) {
    double cum = 0;
    for (int64_t i = 0; i < k; ++i) {
      cum += probs_[i] / sum;
      if (cum >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  const double mass = std::accumulate(probs_.begin(), probs_.begin() + keep, 0.0);
  const double u = std::uniform_real_distribution<double>(0.0, mass)(rng_);
  double cum = 0;
  for (int64_t i = 0; i < keep; ++i) {
    cum += probs_[i];
    if (u < cum) return order_[i];
  }
  return order_[keep - 1];
}

}  // namespace cachalot::model
