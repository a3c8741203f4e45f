// AVX-512 activation quantizer, bit for bit quantize_group on every 128-value group of a row.
//
// Two passes over a stretch of the row (at most kGroupsPerPass groups, in L1): the groups'
// amaxes and scales first, then the encode. One pass per group left each encode waiting for its
// own group's reduction and division (0.15 ms for 128 x 7168 BF16; 0.08 with the split).
//
// The E4M3 encode rounds with a float add instead of bit arithmetic on the exponent (~22
// instructions per 16 values in core's convert, ~11 here with the packing). For finite |y| < 464:
//   M = max(2^(E+20), 2^14), E = |y|'s exponent;  s = |y| + M  (one float add)
// rounds |y| to E4M3's step at its exponent, 2^(E-3) (2^-9 below 2^-6, the subnormal step), to
// nearest even, and s's bits are ((E' + 147) << 23) | m with m the rounded value in steps (8..16
// for normal results, 0..8 for subnormal ones), so code = 8 * (E' + 147) + m - 1128
// = (bits >> 20) + (bits & 31) - 1128. A group whose amax is finite has |y| <= 448 (+1 ulp) by
// the scale's construction, so no saturation is needed; groups with an infinity or a NaN, and a
// row's last partial group, go through quantize_group.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "core/convert.h"
#include "core/isa.h"
#include "gemm/quantize_rows.h"

CACHALOT_AVX512_BEGIN

namespace cachalot::gemm::avx512 {
namespace {

constexpr int64_t kGroupsPerPass = 64;  // 8192 values: 16 KiB of BF16, 32 KiB of F32

// bits(|y| + M) as above, for 16 lanes.
inline __m512i rounded_sum(__m512 y) {
  const __m512i exponent = _mm512_and_si512(_mm512_castps_si512(y), _mm512_set1_epi32(0x7f800000));
  const __m512i m = _mm512_max_epu32(_mm512_add_epi32(exponent, _mm512_set1_epi32(20 << 23)),
                                     _mm512_set1_epi32(0x46800000));  // 2^14
  return _mm512_castps_si512(_mm512_add_ps(y, _mm512_castsi512_ps(m)));
}

// Two lanes' rounded sums a, b -> (m_a + t_a) + ((m_b + t_b) << 8), t = bits >> 20, m = bits & 31.
// Byte 0 is then code_a + 104 (m_a + t_a = code_a + 1128 lies in [1024, 1280)) and byte 1 is
// code_b + 108 (the 4 carried from byte 0, plus 1128 mod 256); bits 5..19 of a rounded sum
// are zero, which lets one shift of b serve for t_b and one ternary-logic op merge the m's.
inline __m512i pair_codes(__m512i a, __m512i b) {
  const __m512i m = _mm512_ternarylogic_epi32(a, _mm512_slli_epi32(b, 8), _mm512_set1_epi32(0x1f1f), 0xa8);  // (a|b)&c
  const __m512i t = _mm512_add_epi32(_mm512_srli_epi32(a, 20), _mm512_srli_epi32(b, 12));
  return _mm512_add_epi32(m, t);
}

// Lanes of pair_codes -> 64 codes: picked from two of them in a layout's order, their biases
// (104 from byte 0, 108 from byte 1) removed, and the sign bits (bit j of `negative` for code
// j) set.
struct CodeLayout {
  __m512i order, bias;
};
inline __m512i finish_codes(__m512i w0, __m512i w1, const CodeLayout& layout, __mmask64 negative) {
  const __m512i picked = _mm512_permutex2var_epi8(w0, layout.order, w1);
  return _mm512_mask_sub_epi8(_mm512_sub_epi8(picked, layout.bias), negative, picked,
                              _mm512_xor_si512(layout.bias, _mm512_set1_epi8(static_cast<char>(0x80))));
}

// BF16: a register holds elements 2i (low half) and 2i+1 of lane i, so w's lane i has codes
// 2i, 2i+1 in bytes 0, 1. F32: w pairs registers of elements 0..15 and 16..31, so lane i has
// codes i, 16+i.
struct Layouts {
  CodeLayout bf16, f32;
  Layouts() {
    alignas(64) uint8_t b[64], f[64], b_bias[64], f_bias[64];
    for (int j = 0; j < 64; ++j) {
      const int from = j < 32 ? 0 : 64, jj = j % 32;
      const int b_byte = jj % 2, f_byte = jj < 16 ? 0 : 1;
      b[j] = static_cast<uint8_t>(from + 4 * (jj / 2) + b_byte);
      f[j] = static_cast<uint8_t>(from + 4 * (jj % 16) + f_byte);
      b_bias[j] = b_byte ? 108 : 104;
      f_bias[j] = f_byte ? 108 : 104;
    }
    bf16 = {_mm512_load_si512(b), _mm512_load_si512(b_bias)};
    f32 = {_mm512_load_si512(f), _mm512_load_si512(f_bias)};
  }
};

// Largest 16-bit lane.
inline uint32_t max_u16(__m512i v) {
  const __m256i h = _mm256_max_epu16(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  const __m128i q = _mm_max_epu16(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  return 0xffffu ^ static_cast<uint32_t>(_mm_cvtsi128_si32(_mm_minpos_epu16(_mm_xor_si128(q, _mm_set1_epi16(-1)))) & 0xffff);
}

// Largest 32-bit lane.
inline uint32_t max_u32(__m512i v) {
  const __m256i h = _mm256_max_epu32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  __m128i q = _mm_max_epu32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  q = _mm_max_epu32(q, _mm_shuffle_epi32(q, 0x4e));
  q = _mm_max_epu32(q, _mm_shuffle_epi32(q, 0xb1));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(q));
}

inline float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof(f));
  return f;
}

// Magnitude bits of a full group's largest value, as float32 bits (>= 0x7f800000: not finite).
inline uint32_t group_top(const bf16* x) {
  const auto* p = reinterpret_cast<const uint16_t*>(x);
  const __m512i magnitude = _mm512_set1_epi16(0x7fff);
  __m512i m = _mm512_and_si512(_mm512_loadu_si512(p), magnitude);
  for (int j = 1; j < 4; ++j) m = _mm512_max_epu16(m, _mm512_and_si512(_mm512_loadu_si512(p + 32 * j), magnitude));
  return max_u16(m) << 16;
}
inline uint32_t group_top(const float* x) {
  const __m512i magnitude = _mm512_set1_epi32(0x7fffffff);
  __m512i m = _mm512_and_si512(_mm512_loadu_si512(x), magnitude);
  for (int j = 1; j < 8; ++j) m = _mm512_max_epu32(m, _mm512_and_si512(_mm512_loadu_si512(x + 16 * j), magnitude));
  return max_u32(m);
}

// Encodes one full group with its factor `inv`.
inline void encode_group(const bf16* x, __m512 inv, const Layouts& o, uint8_t* q) {
  const auto* p = reinterpret_cast<const uint16_t*>(x);
  for (int j = 0; j < 128; j += 64) {
    __m512i w[2], v[2];
    for (int h = 0; h < 2; ++h) {
      v[h] = _mm512_loadu_si512(p + j + 32 * h);
      const __m512i a = _mm512_and_si512(v[h], _mm512_set1_epi32(0x7fff7fff));
      const __m512 even = _mm512_castsi512_ps(_mm512_slli_epi32(a, 16));
      const __m512 odd = _mm512_castsi512_ps(_mm512_and_si512(a, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
      w[h] = pair_codes(rounded_sum(_mm512_mul_ps(even, inv)), rounded_sum(_mm512_mul_ps(odd, inv)));
    }
    const __mmask64 negative = _kunpackd_mask64(_mm512_movepi16_mask(v[1]), _mm512_movepi16_mask(v[0]));
    _mm512_storeu_si512(q + j, finish_codes(w[0], w[1], o.bf16, negative));
  }
}
inline void encode_group(const float* x, __m512 inv, const Layouts& o, uint8_t* q) {
  const __m512 magnitude = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  for (int j = 0; j < 128; j += 64) {
    __m512 v[4];
    for (int h = 0; h < 4; ++h) v[h] = _mm512_loadu_ps(x + j + 16 * h);
    __m512i w[2];
    for (int h = 0; h < 2; ++h)
      w[h] = pair_codes(rounded_sum(_mm512_mul_ps(_mm512_and_ps(v[2 * h], magnitude), inv)),
                        rounded_sum(_mm512_mul_ps(_mm512_and_ps(v[2 * h + 1], magnitude), inv)));
    const __mmask32 low = _mm512_kunpackw(_mm512_movepi32_mask(_mm512_castps_si512(v[1])),
                                          _mm512_movepi32_mask(_mm512_castps_si512(v[0])));
    const __mmask32 high = _mm512_kunpackw(_mm512_movepi32_mask(_mm512_castps_si512(v[3])),
                                           _mm512_movepi32_mask(_mm512_castps_si512(v[2])));
    _mm512_storeu_si512(q + j, finish_codes(w[0], w[1], o.f32, _kunpackd_mask64(high, low)));
  }
}

// The general path for one group: through float32 and quantize_group.
template <typename T>
float quantize_group_generic(const T* x, int64_t n, ScaleFormat format, fp8_e4m3* q) {
  float f[kBlock];
  if constexpr (std::is_same_v<T, float>) {
    std::memcpy(f, x, static_cast<size_t>(n) * sizeof(float));
  } else {
    convert(x, f, static_cast<size_t>(n));
  }
  return quantize_group(f, n, group_amax(f, n), q, format);
}

template <typename T>
void quantize_row_impl(const T* x, int64_t k, ScaleFormat format, fp8_e4m3* q, float* s) {
  static const Layouts layouts;
  const int64_t full = k / kBlock;
  for (int64_t g0 = 0; g0 < full; g0 += kGroupsPerPass) {
    const int64_t g1 = std::min(full, g0 + kGroupsPerPass);
    float inv[kGroupsPerPass];
    for (int64_t g = g0; g < g1; ++g) {
      const uint32_t top = group_top(x + g * kBlock);
      if (top >= 0x7f800000u) {
        inv[g - g0] = 0;  // marks the group as done
        s[g] = quantize_group_generic(x + g * kBlock, kBlock, format, q + g * kBlock);
        continue;
      }
      const detail::GroupScale gs = detail::group_scale(from_bits(top), format);
      s[g] = gs.scale;
      inv[g - g0] = gs.inv;
    }
    for (int64_t g = g0; g < g1; ++g)
      if (inv[g - g0] != 0)
        encode_group(x + g * kBlock, _mm512_set1_ps(inv[g - g0]), layouts, reinterpret_cast<uint8_t*>(q + g * kBlock));
  }
  if (full * kBlock < k) s[full] = quantize_group_generic(x + full * kBlock, k - full * kBlock, format, q + full * kBlock);
}

}  // namespace

void quantize_row(const bf16* x, int64_t k, ScaleFormat format, fp8_e4m3* q, float* s) {
  quantize_row_impl(x, k, format, q, s);
}
void quantize_row(const float* x, int64_t k, ScaleFormat format, fp8_e4m3* q, float* s) {
  quantize_row_impl(x, k, format, q, s);
}

}  // namespace cachalot::gemm::avx512

CACHALOT_AVX512_END
