// AVX-512 online softmax: 16 columns per step, the same exp polynomial as the scalar one
// (multiplies and adds kept separate, as -ffp-contract=off keeps the scalar code).
#include <immintrin.h>

#include <algorithm>
#include <limits>

#include "core/isa.h"
#include "mla/cpu/online_softmax.h"

CACHALOT_AVX512_BEGIN
namespace cachalot::mla::softmax::avx512 {
namespace {

inline __m512 exp_nonpositive16(__m512 x) {
  const __m512 clamped = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 y = _mm512_mul_ps(clamped, _mm512_set1_ps(1.44269504088896341f));
  const __m512 n = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(y, n);
  __m512 p = _mm512_set1_ps(1.5353362e-4f);
  p = _mm512_add_ps(_mm512_mul_ps(p, f), _mm512_set1_ps(1.3398874e-3f));
  p = _mm512_add_ps(_mm512_mul_ps(p, f), _mm512_set1_ps(9.6181291e-3f));
  p = _mm512_add_ps(_mm512_mul_ps(p, f), _mm512_set1_ps(5.5504109e-2f));
  p = _mm512_add_ps(_mm512_mul_ps(p, f), _mm512_set1_ps(2.4022651e-1f));
  p = _mm512_add_ps(_mm512_mul_ps(p, f), _mm512_set1_ps(6.9314718e-1f));
  p = _mm512_add_ps(_mm512_mul_ps(p, f), _mm512_set1_ps(1.0f));
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  const __mmask16 underflow = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_LT_OQ);
  return _mm512_maskz_mul_ps(static_cast<__mmask16>(~underflow), p, _mm512_castsi512_ps(bits));
}

inline __mmask16 lanes_below(int64_t count) {
  return count >= 16 ? static_cast<__mmask16>(0xffff) : count <= 0 ? 0 : static_cast<__mmask16>((1u << count) - 1);
}

}  // namespace

void online_softmax(const Chunk& c) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const __m512 scale = _mm512_set1_ps(c.scale);
  for (int64_t r = 0; r < c.rows; ++r) {
    const int64_t valid = c.valid[r];
    float* s = c.scores + r * c.ld_scores;
    uint16_t* p = c.p + r * c.ld_p;
    if (valid == 0) {
      for (int64_t i = 0; i < c.width; i += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + i), _mm256_setzero_si256());
      continue;
    }
    __m512 vmax = _mm512_set1_ps(kNegInf);
    for (int64_t i = 0; i < valid; i += 16) {
      const __mmask16 m = lanes_below(valid - i);
      const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + i), scale);
      _mm512_mask_storeu_ps(s + i, m, v);
      vmax = _mm512_mask_max_ps(vmax, m, vmax, v);
    }
    const float old_max = c.m[r];
    const float new_max = std::max(old_max, _mm512_reduce_max_ps(vmax));
    const __m512 vnew = _mm512_set1_ps(new_max);
    __m512 vsum = _mm512_setzero_ps();
    for (int64_t i = 0; i < c.width; i += 16) {
      const __mmask16 m = lanes_below(valid - i);
      const __m512 e = _mm512_maskz_mov_ps(m, exp_nonpositive16(_mm512_sub_ps(_mm512_loadu_ps(s + i), vnew)));
      vsum = _mm512_add_ps(vsum, e);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + i), reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(e)));
    }
    if (old_max != new_max && old_max != kNegInf) {
      const float correction = exp_nonpositive(old_max - new_max);
      const __m512 vc = _mm512_set1_ps(correction);
      float* o = c.out + r * c.ld_out;
      int64_t j = 0;
      for (; j + 16 <= c.out_width; j += 16) _mm512_storeu_ps(o + j, _mm512_mul_ps(_mm512_loadu_ps(o + j), vc));
      for (; j < c.out_width; ++j) o[j] *= correction;
      c.l[r] *= correction;
    }
    c.m[r] = new_max;
    c.l[r] += _mm512_reduce_add_ps(vsum);
  }
}

}  // namespace cachalot::mla::softmax::avx512
CACHALOT_AVX512_END
