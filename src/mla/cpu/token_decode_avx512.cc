// FP8 token -> BF16 key row: e4m3 -> BF16 is exact (core's vectorised convert), then each
// value is widened to FP32, multiplied by its group's scale and rounded back to BF16, 16 at a
// time: what decode_token + a BF16 rounding give, in two passes instead of four.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "core/convert.h"
#include "core/isa.h"
#include "mla/cpu/token_decode.h"

CACHALOT_AVX512_BEGIN
namespace cachalot::mla::token::avx512 {

void fp8_to_bf16(const CacheConfig& config, const uint8_t* token, uint16_t* key) {
  const int64_t d = config.latent_dim, groups = config.scale_groups();
  convert(reinterpret_cast<const fp8_e4m3*>(token), reinterpret_cast<bf16*>(key), static_cast<size_t>(d));
  for (int64_t g = 0; g < groups; ++g) {
    float scale;
    std::memcpy(&scale, token + d + g * 4, sizeof(scale));
    const __m512 s = _mm512_set1_ps(scale);
    const int64_t end = std::min<int64_t>(d, (g + 1) * 128);
    for (int64_t c = g * 128; c < end; c += 16) {
      const int64_t n = std::min<int64_t>(16, end - c);
      const __mmask16 m = static_cast<__mmask16>((1u << n) - 1);
      const __m256i codes = _mm256_maskz_loadu_epi16(m, key + c);
      const __m512 v = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(codes), 16));
      const __m256i rounded = (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(v, s));
      _mm256_mask_storeu_epi16(key + c, m, rounded);
    }
  }
  std::memcpy(key + d, token + d + groups * 4, static_cast<size_t>(config.rope_dim) * 2);
}

}  // namespace cachalot::mla::token::avx512
CACHALOT_AVX512_END
