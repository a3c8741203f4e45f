// Rotary position embedding as DeepSeek-V3 applies it: on interleaved pairs (x[2i], x[2i+1])
// of the qk_rope_head_dim part, with YaRN's frequency interpolation when the config asks for it
// (frequencies below the correction range are divided by the factor, those above kept, a linear
// ramp between) and YaRN's attention factor on cos/sin (mscale / mscale_all_dim, 1 for V3).
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"

namespace cachalot::model {

class Rope {
 public:
  explicit Rope(const ModelConfig& config);

  int64_t dim() const { return dim_; }
  // Rotates `count` vectors of dim() values, `stride` floats apart, all at position `pos`.
  void apply(float* x, int64_t count, int64_t stride, int64_t pos) const;
  const std::vector<double>& frequencies() const { return freq_; }

 private:
  int64_t dim_;
  double attention_factor_ = 1.0;
  std::vector<double> freq_;  // dim / 2 angular frequencies
};

}  // namespace cachalot::model
