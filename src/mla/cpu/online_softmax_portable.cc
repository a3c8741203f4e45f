#include <algorithm>
#include <limits>

#include "core/float_formats.h"
#include "core/isa.h"
#include "mla/cpu/online_softmax.h"

namespace cachalot::mla::softmax {

void online_softmax(const Chunk& chunk) {
  if (active_isa() == Isa::kAvx512)
    avx512::online_softmax(chunk);
  else
    portable::online_softmax(chunk);
}

namespace portable {

void online_softmax(const Chunk& c) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (int64_t r = 0; r < c.rows; ++r) {
    const int64_t valid = c.valid[r];
    float* s = c.scores + r * c.ld_scores;
    uint16_t* p = c.p + r * c.ld_p;
    float chunk_max = kNegInf;
    for (int64_t i = 0; i < valid; ++i) chunk_max = std::max(chunk_max, s[i] *= c.scale);
    const float old_max = c.m[r], new_max = std::max(old_max, chunk_max);
    float sum = 0;
    for (int64_t i = 0; i < c.width; ++i) {
      const float e = i < valid ? exp_nonpositive(s[i] - new_max) : 0.0f;
      p[i] = float_to_bf16(e).bits;
      sum += e;
    }
    if (valid == 0) continue;
    if (old_max != new_max && old_max != kNegInf) {
      const float correction = exp_nonpositive(old_max - new_max);
      float* o = c.out + r * c.ld_out;
      for (int64_t j = 0; j < c.out_width; ++j) o[j] *= correction;
      c.l[r] *= correction;
    }
    c.m[r] = new_max;
    c.l[r] += sum;
  }
}

}  // namespace portable
}  // namespace cachalot::mla::softmax
