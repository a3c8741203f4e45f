#include "dualpipe/mlp_stage.h"

#include <cmath>
#include <random>

#include "core/error.h"

namespace cachalot::dualpipe {
namespace {

// c[m, n] (+)= sum_k a[m, k] b[n, k]
void matmul_nt(const float* a, const float* b, float* c, int m, int n, int k, bool accumulate) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      float sum = 0;
      for (int p = 0; p < k; ++p) sum += a[i * k + p] * b[j * k + p];
      c[i * n + j] = accumulate ? c[i * n + j] + sum : sum;
    }
}

// c[m, n] += sum_k a[m, k] b[k, n]
void matmul_nn_add(const float* a, const float* b, float* c, int m, int n, int k) {
  for (int i = 0; i < m; ++i)
    for (int p = 0; p < k; ++p) {
      const float s = a[i * k + p];
      for (int j = 0; j < n; ++j) c[i * n + j] += s * b[p * n + j];
    }
}

// c[m, n] += sum_t a[t, m] b[t, n]
void matmul_tn_add(const float* a, const float* b, float* c, int m, int n, int rows) {
  for (int t = 0; t < rows; ++t)
    for (int i = 0; i < m; ++i) {
      const float s = a[t * m + i];
      for (int j = 0; j < n; ++j) c[i * n + j] += s * b[t * n + j];
    }
}

void add_column_sums(const float* a, float* out, int rows, int cols) {
  for (int t = 0; t < rows; ++t)
    for (int j = 0; j < cols; ++j) out[j] += a[t * cols + j];
}

std::mt19937_64 seeded(uint64_t seed, uint64_t stream) {
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(stream)};
  return std::mt19937_64(seq);
}

}  // namespace

void check_config(const ToyModelConfig& c) {
  CACHALOT_CHECK_ARG(c.hidden > 0, "dualpipe: hidden must be positive, got {}", c.hidden);
  CACHALOT_CHECK_ARG(c.ffn > 0, "dualpipe: ffn must be positive, got {}", c.ffn);
  CACHALOT_CHECK_ARG(c.blocks_per_stage > 0, "dualpipe: blocks per stage must be positive, got {}", c.blocks_per_stage);
  CACHALOT_CHECK_ARG(c.tokens > 0, "dualpipe: tokens per micro-batch must be positive, got {}", c.tokens);
}

MlpStage::MlpStage(const ToyModelConfig& c, int stage)
    : hidden_(c.hidden), ffn_(c.ffn), blocks_(c.blocks_per_stage), tokens_(c.tokens) {
  check_config(c);
  params_.resize(block_size() * blocks_);
  grads_.assign(params_.size(), 0.0f);
  std::mt19937_64 rng = seeded(c.seed, 1000 + static_cast<uint64_t>(stage));
  // Small residual branches keep a deep stack of blocks stable.
  std::uniform_real_distribution<float> in_weights(-1.0f / std::sqrt(float(hidden_)), 1.0f / std::sqrt(float(hidden_)));
  std::uniform_real_distribution<float> out_weights(-0.5f / std::sqrt(float(ffn_)), 0.5f / std::sqrt(float(ffn_)));
  std::uniform_real_distribution<float> bias(-0.05f, 0.05f);
  for (int b = 0; b < blocks_; ++b) {
    float* p = params_.data() + b * block_size();
    for (int i = 0; i < ffn_ * hidden_; ++i) *p++ = in_weights(rng);
    for (int i = 0; i < ffn_; ++i) *p++ = bias(rng);
    for (int i = 0; i < hidden_ * ffn_; ++i) *p++ = out_weights(rng);
    for (int i = 0; i < hidden_; ++i) *p++ = bias(rng);
  }
}

size_t MlpStage::block_size() const { return size_t(2) * ffn_ * hidden_ + ffn_ + hidden_; }

std::vector<float> MlpStage::forward(std::span<const float> x, Saved* saved) const {
  const size_t xs = size_t(tokens_) * hidden_, as = size_t(tokens_) * ffn_;
  CACHALOT_CHECK_ARG(x.size() == xs, "dualpipe: a stage input has {} values, want {} x {}", x.size(), tokens_, hidden_);
  saved->inputs.resize(xs * blocks_);
  saved->acts.resize(as * blocks_);
  std::vector<float> y(x.begin(), x.end());
  for (int b = 0; b < blocks_; ++b) {
    float* in = saved->inputs.data() + b * xs;
    float* a = saved->acts.data() + b * as;
    std::copy(y.begin(), y.end(), in);
    matmul_nt(in, w1(b), a, tokens_, ffn_, hidden_, false);
    for (int t = 0; t < tokens_; ++t)
      for (int f = 0; f < ffn_; ++f) a[t * ffn_ + f] = std::tanh(a[t * ffn_ + f] + b1(b)[f]);
    matmul_nt(a, w2(b), y.data(), tokens_, hidden_, ffn_, true);  // y = x + a W2^T
    for (int t = 0; t < tokens_; ++t)
      for (int h = 0; h < hidden_; ++h) y[t * hidden_ + h] += b2(b)[h];
  }
  return y;
}

std::vector<float> MlpStage::backward_input(std::span<const float> dy, Saved saved, WeightWork* work) const {
  const size_t xs = size_t(tokens_) * hidden_, as = size_t(tokens_) * ffn_;
  CACHALOT_CHECK_ARG(dy.size() == xs, "dualpipe: a stage gradient has {} values, want {} x {}", dy.size(), tokens_, hidden_);
  work->dy.resize(xs * blocks_);
  work->dh.resize(as * blocks_);
  std::vector<float> g(dy.begin(), dy.end());
  for (int b = blocks_ - 1; b >= 0; --b) {
    const float* a = saved.acts.data() + b * as;
    float* dy_b = work->dy.data() + b * xs;
    float* dh = work->dh.data() + b * as;
    std::copy(g.begin(), g.end(), dy_b);
    std::fill(dh, dh + as, 0.0f);
    matmul_nn_add(dy_b, w2(b), dh, tokens_, ffn_, hidden_);  // da = dy W2
    for (size_t i = 0; i < as; ++i) dh[i] *= 1.0f - a[i] * a[i];
    matmul_nn_add(dh, w1(b), g.data(), tokens_, hidden_, ffn_);  // dx = dy + dh W1
  }
  work->saved = std::move(saved);
  return g;
}

void MlpStage::backward_weight(const WeightWork& work) {
  const size_t xs = size_t(tokens_) * hidden_, as = size_t(tokens_) * ffn_;
  for (int b = 0; b < blocks_; ++b) {
    float* g = grads_.data() + b * block_size();
    float* gw1 = g;
    float* gb1 = gw1 + ffn_ * hidden_;
    float* gw2 = gb1 + ffn_;
    float* gb2 = gw2 + hidden_ * ffn_;
    const float* x = work.saved.inputs.data() + b * xs;
    const float* a = work.saved.acts.data() + b * as;
    const float* dy = work.dy.data() + b * xs;
    const float* dh = work.dh.data() + b * as;
    matmul_tn_add(dy, a, gw2, hidden_, ffn_, tokens_);
    add_column_sums(dy, gb2, tokens_, hidden_);
    matmul_tn_add(dh, x, gw1, ffn_, hidden_, tokens_);
    add_column_sums(dh, gb1, tokens_, ffn_);
  }
}

void MlpStage::zero_grads() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

void MlpStage::sgd(float lr) {
  for (size_t i = 0; i < params_.size(); ++i) params_[i] -= lr * grads_[i];
}

ToyBatch make_toy_batch(const ToyModelConfig& c, int micro_batches) {
  check_config(c);
  std::mt19937_64 rng = seeded(c.seed, 1);
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::vector<float> teacher(size_t(c.hidden) * c.hidden);
  for (float& v : teacher) v = unit(rng) * 1.5f / std::sqrt(float(c.hidden));
  ToyBatch batch;
  const size_t n = size_t(c.tokens) * c.hidden;
  for (int mb = 0; mb < micro_batches; ++mb) {
    std::vector<float> x(n), t(n);
    for (float& v : x) v = unit(rng);
    matmul_nt(x.data(), teacher.data(), t.data(), c.tokens, c.hidden, c.hidden, false);
    for (float& v : t) v = std::tanh(v);
    batch.inputs.push_back(std::move(x));
    batch.targets.push_back(std::move(t));
  }
  return batch;
}

double mse_loss(std::span<const float> output, std::span<const float> target, int micro_batches, std::vector<float>* grad) {
  CACHALOT_CHECK_ARG(output.size() == target.size(), "dualpipe: output has {} values, target {}", output.size(), target.size());
  const double scale = 1.0 / (double(output.size()) * micro_batches);
  grad->resize(output.size());
  double loss = 0;
  for (size_t i = 0; i < output.size(); ++i) {
    const double d = double(output[i]) - target[i];
    loss += d * d * scale;
    (*grad)[i] = static_cast<float>(2.0 * d * scale);
  }
  return loss;
}

}  // namespace cachalot::dualpipe
