// float32 -> BF16 in AVX-512 registers, shared by the bulk conversion and the GEMM kernels'
// fused output. Include it after CACHALOT_AVX512_BEGIN (AVX-512 code only) and <immintrin.h>.
//
// Integer rounding to nearest, ties to even, NaNs kept quiet: bit for bit float_to_bf16
// (vcvtneps2bf16 would flush float32 denormals to zero).
#pragma once

namespace cachalot::bf16_avx512 {

// 16 floats -> 16 BF16 codes.
inline __m256i encode(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb)), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
  return _mm512_cvtepi32_epi16(r);
}

}  // namespace cachalot::bf16_avx512
