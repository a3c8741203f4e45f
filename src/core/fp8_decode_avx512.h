// E4M3 -> BF16 decoding in AVX-512 registers, shared by the bulk conversions and the GEMM
// kernels. Include it after CACHALOT_AVX512_BEGIN (it holds AVX-512 code only) and after
// <immintrin.h> and core/float_formats.h.
//
// 64 codes at a time: two byte permutes (vpermi2b) look up the low and the high byte of each
// code's BF16 value in 128-entry tables (only the 7 magnitude bits index), the sign bit is
// OR-ed into the high byte, the bytes are interleaved into words, and one cross-lane permute per
// output restores element order. 7 instructions per 64 values, exact for every code.
#pragma once

namespace cachalot::fp8_avx512 {

struct E4M3ToBf16 {
  __m512i low0, low1, high0, high1;
  __m512i sign_mask;
  __m512i order0, order1;  // qword permutes putting the interleaved words back in order

  static E4M3ToBf16 make() {
    const uint8_t* bytes = e4m3_magnitude_to_bf16_bytes();
    return {_mm512_loadu_si512(bytes), _mm512_loadu_si512(bytes + 64), _mm512_loadu_si512(bytes + 128),
            _mm512_loadu_si512(bytes + 192), _mm512_set1_epi8(static_cast<char>(0x80)),
            _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15)};
  }

  // codes: 64 E4M3 codes; out0 gets the BF16 of codes 0..31, out1 of codes 32..63.
  void decode(__m512i codes, __m512i& out0, __m512i& out1) const {
    const __m512i lo = _mm512_permutex2var_epi8(low0, codes, low1);
    __m512i hi = _mm512_permutex2var_epi8(high0, codes, high1);
    hi = _mm512_ternarylogic_epi32(hi, codes, sign_mask, 0xF8);  // hi | (codes & 0x80)
    const __m512i w0 = _mm512_unpacklo_epi8(lo, hi);  // per 128-bit lane: codes 16L + 0..7
    const __m512i w1 = _mm512_unpackhi_epi8(lo, hi);  //                   codes 16L + 8..15
    out0 = _mm512_permutex2var_epi64(w0, order0, w1);
    out1 = _mm512_permutex2var_epi64(w0, order1, w1);
  }
};

}  // namespace cachalot::fp8_avx512
