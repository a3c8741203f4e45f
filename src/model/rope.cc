#include "model/rope.h"

#include <algorithm>
#include <cmath>

namespace cachalot::model {
namespace {

constexpr double kPi = 3.14159265358979323846;

// The rotary dimension at which a frequency completes `rotations` turns over `max_positions`.
double correction_dim(double rotations, int64_t dim, double base, int64_t max_positions) {
  return dim * std::log(max_positions / (rotations * 2 * kPi)) / (2 * std::log(base));
}

double yarn_mscale(double factor, double mscale) { return factor <= 1.0 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0; }

}  // namespace

Rope::Rope(const ModelConfig& c) : dim_(c.qk_rope_head_dim) {
  const int64_t half = dim_ / 2;
  freq_.resize(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) freq_[i] = 1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / dim_);
  if (!c.yarn) return;
  const YarnScaling& y = *c.yarn;
  const int64_t original = y.original_max_position_embeddings;
  double low = std::floor(correction_dim(y.beta_fast, dim_, c.rope_theta, original));
  double high = std::ceil(correction_dim(y.beta_slow, dim_, c.rope_theta, original));
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim_ - 1));
  if (low == high) high += 0.001;
  for (int64_t i = 0; i < half; ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    const double keep = 1.0 - ramp;  // 1: high frequency, kept; 0: low frequency, interpolated
    freq_[i] = freq_[i] / y.factor * (1.0 - keep) + freq_[i] * keep;
  }
  attention_factor_ = yarn_mscale(y.factor, y.mscale) / yarn_mscale(y.factor, y.mscale_all_dim);
}

void Rope::apply(float* x, int64_t count, int64_t stride, int64_t pos) const {
  const int64_t half = dim_ / 2;
  float cos_sin[2 * 256];
  std::vector<float> big;
  float* cs = cos_sin;
  if (half > 256) {
    big.resize(static_cast<size_t>(2 * half));
    cs = big.data();
  }
  for (int64_t i = 0; i < half; ++i) {
    const double angle = static_cast<double>(pos) * freq_[i];
    cs[2 * i] = static_cast<float>(std::cos(angle) * attention_factor_);
    cs[2 * i + 1] = static_cast<float>(std::sin(angle) * attention_factor_);
  }
  for (int64_t v = 0; v < count; ++v) {
    float* p = x + v * stride;
    for (int64_t i = 0; i < half; ++i) {
      const float a = p[2 * i], b = p[2 * i + 1], c = cs[2 * i], s = cs[2 * i + 1];
      p[2 * i] = a * c - b * s;
      p[2 * i + 1] = a * s + b * c;
    }
  }
}

}  // namespace cachalot::model
