// One step of the online softmax shared by the MLA kernels (internal to src/mla): a chunk of
// score rows, each against up to `width` keys, folded into the running max m, running sum l and
// the rows' output accumulators (FlashAttention's recurrence):
//   s      = scores * scale, over the row's first valid[r] columns (the rest are masked out)
//   m_new  = max(m, max s)
//   p      = exp(s - m_new), rounded to BF16 into `p` (0 past valid[r]); l = l * c + sum(p)
//   out   *= c = exp(m - m_new) when the max moved (and was finite)
// A row with valid[r] = 0 gets p = 0 and keeps m, l and out. The sums use the FP32 values of p
// (so the lse is not biased by the BF16 rounding); exp is exp_nonpositive's polynomial.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace cachalot::mla::softmax {

struct Chunk {
  int64_t rows = 0;
  int64_t width = 0;             // columns per row, a multiple of 16
  float* scores = nullptr;       // [rows][ld_scores] raw dot products (scaled in place)
  int64_t ld_scores = 0;
  const int32_t* valid = nullptr;  // per row: visible leading columns, 0..width
  float scale = 1.0f;
  uint16_t* p = nullptr;         // [rows][ld_p] BF16 probabilities out
  int64_t ld_p = 0;
  float* m = nullptr;            // [rows] running max (-inf before the first key)
  float* l = nullptr;            // [rows] running sum
  float* out = nullptr;          // [rows][ld_out] accumulators, the first out_width rescaled
  int64_t ld_out = 0;
  int64_t out_width = 0;
};

// Runs the chunk with the active ISA's kernel.
void online_softmax(const Chunk& chunk);

namespace portable {
void online_softmax(const Chunk& chunk);
}  // namespace portable
namespace avx512 {
void online_softmax(const Chunk& chunk);
}  // namespace avx512

// exp(x) for x <= 0 (scores minus their running max): 2^(x log2 e) split into an integer power,
// applied through the exponent bits, and a degree-6 polynomial on [-0.5, 0.5] (relative error
// ~2e-7). Below -87 it returns 0. The AVX-512 kernel evaluates the same operations in the same
// order, so both ISAs give the same values.
inline float exp_nonpositive(float x) {
  const float y = (x < -87.0f ? -87.0f : x) * 1.44269504088896341f;
  const float n = std::nearbyint(y);
  const float f = y - n;
  float p = 1.5353362e-4f;
  p = p * f + 1.3398874e-3f;
  p = p * f + 9.6181291e-3f;
  p = p * f + 5.5504109e-2f;
  p = p * f + 2.4022651e-1f;
  p = p * f + 6.9314718e-1f;
  p = p * f + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x < -87.0f ? 0.0f : p * scale;
}

}  // namespace cachalot::mla::softmax
