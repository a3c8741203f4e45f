// AVX-512 row arithmetic: 16 floats per step, the tail through masked loads and stores.
#include <immintrin.h>

#include "core/isa.h"
#include "core/vector_ops.h"

CACHALOT_AVX512_BEGIN
namespace cachalot::vector_kernels::avx512 {
namespace {

inline __mmask16 tail_mask(size_t remaining) {
  return remaining >= 16 ? __mmask16(0xffff) : __mmask16((1u << remaining) - 1);
}

// BF16 -> F32 is a 16-bit shift into the high half.
inline __m512 load_bf16(const bf16* p, __mmask16 m) {
  const __m256i raw = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

template <typename Load> void add_scaled_with(float* y, float w, size_t n, Load load) {
  const __m512 vw = _mm512_set1_ps(w);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 prod = _mm512_mul_ps(vw, load(i, m));  // mul, then add: no FMA
    _mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i), prod));
  }
}

// 64 floats (four registers, independent sums) per step while a full step fits, then 16 with
// the tail masked; per element the same sum as the portable loop.
// Each row is prefetched kAheadBytes ahead of the step: the rows (an EP combine's 8 per token,
// scattered over other ranks' buffers) are short streams that the hardware prefetcher picks up
// late (LL combine of 128 x 8 rows of 7168 BF16: 0.51-0.56 -> 0.48-0.51 ms).
template <typename T, typename Load>
void weighted_sum_with(float* y, const T* const* x, const float* w, size_t rows, size_t n, Load load) {
  constexpr size_t kAheadBytes = 1024, kStepBytes = 64 * sizeof(T);
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    const bool prefetch = (i + 64) * sizeof(T) + kAheadBytes <= n * sizeof(T);
    for (size_t r = 0; r < rows; ++r) {
      if (prefetch)
        for (size_t b = 0; b < kStepBytes; b += 64)
          _mm_prefetch(reinterpret_cast<const char*>(x[r] + i) + kAheadBytes + b, _MM_HINT_T0);
      const __m512 vw = _mm512_set1_ps(w[r]);
      for (int v = 0; v < 4; ++v) acc[v] = _mm512_add_ps(acc[v], _mm512_mul_ps(vw, load(r, i + 16 * v, __mmask16(0xffff))));
    }
    for (int v = 0; v < 4; ++v) _mm512_storeu_ps(y + i + 16 * v, acc[v]);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    __m512 acc = _mm512_setzero_ps();
    for (size_t r = 0; r < rows; ++r) acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(w[r]), load(r, i, m)));
    _mm512_mask_storeu_ps(y + i, m, acc);
  }
}

}  // namespace

void add_scaled(float* y, const float* x, float w, size_t n) {
  add_scaled_with(y, w, n, [&](size_t i, __mmask16 m) { return _mm512_maskz_loadu_ps(m, x + i); });
}
void add_scaled(float* y, const bf16* x, float w, size_t n) {
  add_scaled_with(y, w, n, [&](size_t i, __mmask16 m) { return load_bf16(x + i, m); });
}

void weighted_sum(float* y, const float* const* x, const float* w, size_t rows, size_t n) {
  weighted_sum_with(y, x, w, rows, n, [&](size_t r, size_t i, __mmask16 m) { return _mm512_maskz_loadu_ps(m, x[r] + i); });
}
void weighted_sum(float* y, const bf16* const* x, const float* w, size_t rows, size_t n) {
  weighted_sum_with(y, x, w, rows, n, [&](size_t r, size_t i, __mmask16 m) { return load_bf16(x[r] + i, m); });
}

float abs_max(const float* x, size_t n) {
  // max(|x|, m) keeps m where |x| is NaN (vmaxps returns its second operand on NaN), like the
  // portable loop; the four running maxima are never NaN, so their order does not matter.
  const __m512 magnitude = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  __m512 m[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  size_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int v = 0; v < 4; ++v)
      m[v] = _mm512_mask_max_ps(m[v], 0xffff, _mm512_and_ps(_mm512_loadu_ps(x + i + 16 * v), magnitude), m[v]);
  for (; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    m[0] = _mm512_mask_max_ps(m[0], k, _mm512_and_ps(_mm512_maskz_loadu_ps(k, x + i), magnitude), m[0]);
  }
  // Masked max and extract forms: GCC 12's _mm512_max_ps, _mm512_reduce_max_ps and
  // _mm512_castps512_ps256 warn about their own undefined operands (-Wuninitialized) here.
  // (The lanes were first reduced through memory: 64 scalar compares, which cost more than the
  // loop for a 128-value quantization group.)
  __m512 v = _mm512_mask_max_ps(m[0], 0xffff, m[0], m[1]);
  const __m512 w = _mm512_mask_max_ps(m[2], 0xffff, m[2], m[3]);
  v = _mm512_mask_max_ps(v, 0xffff, v, w);
  const __m512d halves = _mm512_castps_pd(v);
  const __m256 h = _mm256_max_ps(_mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xff, halves, 0)),
                                 _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xff, halves, 1)));
  __m128 q = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_max_ps(q, _mm_movehl_ps(q, q));
  q = _mm_max_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

}  // namespace cachalot::vector_kernels::avx512
CACHALOT_AVX512_END
