// AVX-512 bulk conversions. Every kernel handles 16 elements per step and the tail with masked
// loads and stores, so there is no scalar remainder loop to keep in sync with the vector code.
#include <immintrin.h>

#include "core/convert.h"
#include "core/isa.h"

CACHALOT_AVX512_BEGIN
#include "core/bf16_encode_avx512.h"
#include "core/fp8_decode_avx512.h"
namespace cachalot::convert_kernels::avx512 {
namespace {

inline __mmask16 tail_mask(size_t remaining) {
  return remaining >= 16 ? __mmask16(0xffff) : __mmask16((1u << remaining) - 1);
}

// Loads and stores of 16 elements: plain for full blocks, masked for the tail. (Masked memory
// operations in the main loop cost about half the bandwidth of a streaming conversion.)
template <bool kFull> inline __m512 load16(const float* p, __mmask16 m) {
  if constexpr (kFull) return _mm512_loadu_ps(p); else return _mm512_maskz_loadu_ps(m, p);
}
template <bool kFull> inline __m256i load16(const uint16_t* p, __mmask16 m) {
  if constexpr (kFull) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  else return _mm256_maskz_loadu_epi16(m, p);
}
template <bool kFull> inline __m128i load16(const uint8_t* p, __mmask16 m) {
  if constexpr (kFull) return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  else return _mm_maskz_loadu_epi8(m, p);
}
template <bool kFull> inline void store16(float* p, __mmask16 m, __m512 v) {
  if constexpr (kFull) _mm512_storeu_ps(p, v); else _mm512_mask_storeu_ps(p, m, v);
}
template <bool kFull> inline void store16(uint16_t* p, __mmask16 m, __m256i v) {
  if constexpr (kFull) _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v);
  else _mm256_mask_storeu_epi16(p, m, v);
}
template <bool kFull> inline void store16(uint8_t* p, __mmask16 m, __m128i v) {
  if constexpr (kFull) _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v); else _mm_mask_storeu_epi8(p, m, v);
}

// Runs step<kFull>(i, mask) over [0, n) in blocks of 16.
template <typename Step>
inline void for_blocks16(size_t n, Step step) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) step.template operator()<true>(i, __mmask16(0xffff));
  if (i < n) step.template operator()<false>(i, tail_mask(n - i));
}

// The raw code arrays behind the wrapper types.
inline const uint16_t* codes(const bf16* p) { return reinterpret_cast<const uint16_t*>(p); }
inline uint16_t* codes(bf16* p) { return reinterpret_cast<uint16_t*>(p); }
inline const uint16_t* codes(const fp16* p) { return reinterpret_cast<const uint16_t*>(p); }
inline uint16_t* codes(fp16* p) { return reinterpret_cast<uint16_t*>(p); }
inline const uint8_t* codes(const fp8_e4m3* p) { return reinterpret_cast<const uint8_t*>(p); }
inline uint8_t* codes(fp8_e4m3* p) { return reinterpret_cast<uint8_t*>(p); }
inline const uint8_t* codes(const fp8_e5m2* p) { return reinterpret_cast<const uint8_t*>(p); }
inline uint8_t* codes(fp8_e5m2* p) { return reinterpret_cast<uint8_t*>(p); }

// float32 -> 8-bit float, round to nearest even, saturating, on 16 lanes of 32-bit codes.
// Mirrors float_formats.cc's encode(): normal results from the rounded float32 bits, subnormal
// results from an exact power-of-two scaling rounded by vrndscaleps.
template <int kMantissaBits, int kBias, uint32_t kMaxFiniteCode, uint32_t kNanCode, bool kInfToInf>
inline __m128i encode_fp8(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i sign = _mm512_and_si512(_mm512_srli_epi32(u, 24), _mm512_set1_epi32(0x80));
  const __m512i abs_bits = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
  constexpr int kShift = 23 - kMantissaBits;
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(abs_bits, kShift), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(
      abs_bits, _mm512_add_epi32(_mm512_set1_epi32((1 << (kShift - 1)) - 1), lsb));
  __m512i code = _mm512_sub_epi32(_mm512_srli_epi32(rounded, kShift),
                                  _mm512_set1_epi32((127 - kBias) << kMantissaBits));
  code = _mm512_min_epu32(code, _mm512_set1_epi32(kMaxFiniteCode));
  // Subnormal results: |x| < 2^(1-bias).
  const __mmask16 subnormal =
      _mm512_cmplt_epu32_mask(abs_bits, _mm512_set1_epi32((127 + 1 - kBias) << 23));
  const __m512 scaled = _mm512_mul_ps(_mm512_castsi512_ps(abs_bits),
                                      _mm512_set1_ps(float(1u << (kMantissaBits + kBias - 1))));
  const __m512i sub_code = _mm512_cvtps_epi32(
      _mm512_roundscale_ps(scaled, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  code = _mm512_mask_mov_epi32(code, subnormal, sub_code);
  if constexpr (kInfToInf) {
    const __mmask16 inf = _mm512_cmpeq_epi32_mask(abs_bits, _mm512_set1_epi32(0x7f800000));
    code = _mm512_mask_mov_epi32(code, inf, _mm512_set1_epi32(kMaxFiniteCode + 1));
  }
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(abs_bits, _mm512_set1_epi32(0x7f800000));
  code = _mm512_mask_mov_epi32(code, nan, _mm512_set1_epi32(kNanCode));
  return _mm512_cvtepi32_epi8(_mm512_or_si512(code, sign));
}

template <typename Code, int kMantissaBits, int kBias, uint32_t kMaxFiniteCode, uint32_t kNanCode,
          bool kInfToInf>
void encode_fp8_loop(const float* src, Code* dst, size_t n) {
  for_blocks16(n, [&]<bool kFull>(size_t i, __mmask16 m) {
    store16<kFull>(codes(dst) + i, m,
                   encode_fp8<kMantissaBits, kBias, kMaxFiniteCode, kNanCode, kInfToInf>(load16<kFull>(src + i, m)));
  });
}

// E4M3 -> float32: place the 7 magnitude bits at the top of a float32's exponent/mantissa
// and multiply by 2^(127-7); the float32 denormal this makes for E4M3 subnormals scales exactly.
inline __m512 decode_e4m3(__m128i bytes) {
  const __m512i x = _mm512_cvtepu8_epi32(bytes);
  const __m512i magnitude = _mm512_and_si512(x, _mm512_set1_epi32(0x7f));
  __m512 value = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(magnitude, 20)),
                               _mm512_set1_ps(0x1p120f));
  const __mmask16 nan = _mm512_cmpeq_epi32_mask(magnitude, _mm512_set1_epi32(0x7f));
  value = _mm512_mask_mov_ps(value, nan, _mm512_set1_ps(__builtin_nanf("")));
  const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(x, _mm512_set1_epi32(0x80)), 24);
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(value), sign));
}

inline __m512 decode_bf16(__m256i halfwords) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(halfwords), 16));
}

}  // namespace

void convert(const float* src, bf16* dst, size_t n) {
  for_blocks16(n, [&]<bool kFull>(size_t i, __mmask16 m) {
    store16<kFull>(codes(dst) + i, m, bf16_avx512::encode(load16<kFull>(src + i, m)));
  });
}

void convert(const bf16* src, float* dst, size_t n) {
  for_blocks16(n, [&]<bool kFull>(size_t i, __mmask16 m) {
    store16<kFull>(dst + i, m, decode_bf16(load16<kFull>(codes(src) + i, m)));
  });
}

void convert(const float* src, fp16* dst, size_t n) {
  for_blocks16(n, [&]<bool kFull>(size_t i, __mmask16 m) {
    const __m256i h = _mm512_cvtps_ph(load16<kFull>(src + i, m), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    store16<kFull>(codes(dst) + i, m, h);
  });
}

void convert(const fp16* src, float* dst, size_t n) {
  for_blocks16(n, [&]<bool kFull>(size_t i, __mmask16 m) {
    store16<kFull>(dst + i, m, _mm512_cvtph_ps(load16<kFull>(codes(src) + i, m)));
  });
}

void convert(const float* src, fp8_e4m3* dst, size_t n) {
  encode_fp8_loop<fp8_e4m3, 3, 7, 0x7e, 0x7f, false>(src, dst, n);
}

void convert_scaled(const float* src, float scale, fp8_e4m3* dst, size_t n) {
  const __m512 s = _mm512_set1_ps(scale);
  for_blocks16(n, [&]<bool kFull>(size_t i, __mmask16 m) {
    store16<kFull>(codes(dst) + i, m,
                   encode_fp8<3, 7, 0x7e, 0x7f, false>(_mm512_mul_ps(load16<kFull>(src + i, m), s)));
  });
}

void convert(const float* src, fp8_e5m2* dst, size_t n) {
  encode_fp8_loop<fp8_e5m2, 2, 15, 0x7b, 0x7e, true>(src, dst, n);
}

void convert(const fp8_e4m3* src, float* dst, size_t n) {
  for_blocks16(n, [&]<bool kFull>(size_t i, __mmask16 m) {
    store16<kFull>(dst + i, m, decode_e4m3(load16<kFull>(codes(src) + i, m)));
  });
}

void convert(const fp8_e4m3* src, bf16* dst, size_t n) {
  const auto decoder = fp8_avx512::E4M3ToBf16::make();
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m512i a, b;
    decoder.decode(_mm512_loadu_si512(src + i), a, b);
    _mm512_storeu_si512(dst + i, a);
    _mm512_storeu_si512(dst + i + 32, b);
  }
  if (i < n) {
    const size_t rest = n - i;
    const __mmask64 m = rest >= 64 ? ~__mmask64(0) : (__mmask64(1) << rest) - 1;
    __m512i a, b;
    decoder.decode(_mm512_maskz_loadu_epi8(m, src + i), a, b);
    _mm512_mask_storeu_epi16(dst + i, static_cast<__mmask32>(m), a);
    _mm512_mask_storeu_epi16(dst + i + 32, static_cast<__mmask32>(m >> 32), b);
  }
}

void convert(const fp8_e5m2* src, float* dst, size_t n) {
  // E5M2 is the top byte of an FP16: widen, shift, and let vcvtph2ps decode (inf/NaN included).
  for_blocks16(n, [&]<bool kFull>(size_t i, __mmask16 m) {
    const __m256i h = _mm256_slli_epi16(_mm256_cvtepu8_epi16(load16<kFull>(codes(src) + i, m)), 8);
    store16<kFull>(dst + i, m, _mm512_cvtph_ps(h));
  });
}

}  // namespace cachalot::convert_kernels::avx512
CACHALOT_AVX512_END
