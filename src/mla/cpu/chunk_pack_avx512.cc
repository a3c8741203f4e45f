// AVX-512 packing: V by zero-extending two tokens' 16 dims and merging them into one dword
// vector; K^T by 16x16 dword transposes (16 tokens x 16 pairs per step).
#include <immintrin.h>

#include "core/isa.h"
#include "mla/cpu/chunk_pack.h"

CACHALOT_AVX512_BEGIN
namespace cachalot::mla::pack::avx512 {
namespace {

// Transposes 16 rows of 16 dwords in place (rows become columns).
inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // Now r[4q + k] holds, per 128-bit lane L, elements (row 4q..4q+3) x column 4L + k.
  // Column 4L + k is lane L of r[k], r[4 + k], r[8 + k], r[12 + k]: a 4x4 transpose of lanes.
  for (int k = 0; k < 4; ++k) {
    const __m512i ab_lo = _mm512_shuffle_i32x4(r[k], r[4 + k], 0x88);   // lanes 0,2 of a; 0,2 of b
    const __m512i ab_hi = _mm512_shuffle_i32x4(r[k], r[4 + k], 0xdd);   // lanes 1,3 of a; 1,3 of b
    const __m512i cd_lo = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0x88);
    const __m512i cd_hi = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0xdd);
    t[k] = _mm512_shuffle_i32x4(ab_lo, cd_lo, 0x88);        // column k      (lane 0 of each row group)
    t[8 + k] = _mm512_shuffle_i32x4(ab_lo, cd_lo, 0xdd);    // column 8 + k  (lane 2)
    t[4 + k] = _mm512_shuffle_i32x4(ab_hi, cd_hi, 0x88);    // column 4 + k  (lane 1)
    t[12 + k] = _mm512_shuffle_i32x4(ab_hi, cd_hi, 0xdd);   // column 12 + k (lane 3)
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

}  // namespace

void pack_kt(const uint16_t* tokens, int64_t key_dim, int64_t kq_blocks, uint32_t* kt) {
  const int64_t pairs = key_dim / 2;
  for (int64_t p = 0; p < 8; ++p) {
    uint32_t* panel = kt + p * kq_blocks * 1024;
    for (int64_t g0 = 0; g0 < pairs; g0 += 16) {
      const int64_t count = pairs - g0 < 16 ? pairs - g0 : 16;
      const __mmask16 m = static_cast<__mmask16>((1u << count) - 1);
      __m512i r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = _mm512_maskz_loadu_epi32(m, reinterpret_cast<const uint32_t*>(tokens + (p * 16 + i) * key_dim) + g0);
      transpose16(r);
      for (int64_t k = 0; k < count; ++k) {
        const int64_t g = g0 + k;
        _mm512_storeu_si512(panel + (g / 64) * 1024 + (g % 64) * 16, r[k]);
      }
    }
  }
}

void pack_v(const uint16_t* tokens, int64_t key_dim, int64_t latent, uint32_t* vt) {
  for (int64_t j = 0; j < 64; ++j) {
    const uint16_t* a = tokens + (2 * j) * key_dim;
    const uint16_t* b = a + key_dim;
    for (int64_t c0 = 0; c0 < latent; c0 += 16) {
      const __m512i lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + c0)));
      const __m512i hi = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + c0)));
      _mm512_storeu_si512(vt + (c0 / 16) * 1024 + j * 16, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
    }
  }
}

}  // namespace cachalot::mla::pack::avx512
CACHALOT_AVX512_END
