// One pipeline stage of the executor's toy model: a stack of residual MLP blocks in FP32 with a
// hand-written forward and a backward split into its input half (B) and weight half (W), as
// zero-bubble schedules need:
//
//   block:  h = x W1^T + b1,  a = tanh(h),  y = x + a W2^T + b2      (W1 [ffn, hidden], W2 [hidden, ffn])
//   B:      da = dy W2,  dh = da * (1 - a^2),  dx = dy + dh W1        (keeps dy, dh for W)
//   W:      dW2 += dy^T a,  db2 += sum dy,  dW1 += dh^T x,  db1 += sum dh
//
// A full backward is B then W at once. Parameters depend only on (seed, stage), so every copy
// of a stage (DualPipe keeps two) and the sequential reference start equal.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace cachalot::dualpipe {

struct ToyModelConfig {
  int hidden = 32;
  int ffn = 64;
  int blocks_per_stage = 2;
  int tokens = 8;  // rows of one micro-batch
  uint64_t seed = 1;
};
// Throws Error(kInvalidArgument) naming the field that is not positive.
void check_config(const ToyModelConfig& config);

class MlpStage {
 public:
  MlpStage(const ToyModelConfig& config, int stage);

  // What the forward keeps for the backward: each block's input and tanh output.
  struct Saved {
    std::vector<float> inputs;  // [blocks][tokens x hidden]
    std::vector<float> acts;    // [blocks][tokens x ffn]
  };
  // What the input half leaves for the weight half.
  struct WeightWork {
    Saved saved;
    std::vector<float> dy;  // [blocks][tokens x hidden]: gradient at each block's output
    std::vector<float> dh;  // [blocks][tokens x ffn]
  };

  // x and the result: [tokens, hidden].
  std::vector<float> forward(std::span<const float> x, Saved* saved) const;
  // The gradient at the stage's input from the gradient at its output.
  std::vector<float> backward_input(std::span<const float> dy, Saved saved, WeightWork* work) const;
  // Adds this micro-batch's weight gradients into grads().
  void backward_weight(const WeightWork& work);

  std::span<float> params() { return params_; }
  std::span<const float> params() const { return params_; }
  std::span<float> grads() { return grads_; }
  std::span<const float> grads() const { return grads_; }
  void zero_grads();
  // params -= lr * grads
  void sgd(float lr);

 private:
  size_t block_size() const;
  const float* w1(int block) const { return params_.data() + block * block_size(); }
  const float* b1(int block) const { return w1(block) + ffn_ * hidden_; }
  const float* w2(int block) const { return b1(block) + ffn_; }
  const float* b2(int block) const { return w2(block) + hidden_ * ffn_; }

  int hidden_, ffn_, blocks_, tokens_;
  std::vector<float> params_, grads_;
};

// The toy regression task: micro-batch inputs and targets (a fixed random tanh teacher), the
// same on every rank for a given seed.
struct ToyBatch {
  std::vector<std::vector<float>> inputs;   // [micro-batch][tokens x hidden]
  std::vector<std::vector<float>> targets;  // [micro-batch][tokens x hidden]
};
ToyBatch make_toy_batch(const ToyModelConfig& config, int micro_batches);

// Mean squared error of one micro-batch's output, scaled so that the micro-batches of a step
// sum to the mean over all of them; `grad` gets d(loss)/d(output).
double mse_loss(std::span<const float> output, std::span<const float> target, int micro_batches, std::vector<float>* grad);

}  // namespace cachalot::dualpipe
