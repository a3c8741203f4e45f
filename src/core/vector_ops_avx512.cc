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

}  // namespace

void add_scaled(float* y, const float* x, float w, size_t n) {
  add_scaled_with(y, w, n, [&](size_t i, __mmask16 m) { return _mm512_maskz_loadu_ps(m, x + i); });
}
void add_scaled(float* y, const bf16* x, float w, size_t n) {
  add_scaled_with(y, w, n, [&](size_t i, __mmask16 m) { return load_bf16(x + i, m); });
}

}  // namespace cachalot::vector_kernels::avx512
CACHALOT_AVX512_END
