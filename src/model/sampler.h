// Choosing the next token from logits: greedy (temperature 0), or sampling from
// softmax(logits / temperature) restricted to the top_k most likely tokens and then to the
// smallest set whose probability reaches top_p (nucleus). Seeded: the same seed and logits give
// the same tokens.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace cachalot::model {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  float top_p = 1.0f;        // (0, 1]
  int64_t top_k = 0;         // 0: no limit
  uint64_t seed = 0;
};

// Throws kInvalidArgument naming the parameter when out of range.
void validate(const SamplingParams& params);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  int32_t sample(const float* logits, int64_t vocab);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<int32_t> order_;
  std::vector<double> probs_;
};

}  // namespace cachalot::model
