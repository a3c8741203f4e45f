#include "core/float_formats.h"

#include <array>
#include <cmath>

namespace cachalot {
namespace {

// A sign + exponent + mantissa format narrower than float32. Encoding works on the float32
// bits for normal results and on an exact power-of-two scaling for subnormal results, both
// rounding to nearest even; the caller's policy decides what happens past the largest code.
struct MiniFloat {
  int exponent_bits;
  int mantissa_bits;
  int bias;
  uint32_t max_finite_code;  // magnitude code of the largest finite value
  uint32_t nan_code;         // magnitude code written for NaN
  bool has_inf;              // exponent all-ones with zero mantissa is inf (IEEE-like)
  bool saturate;             // finite overflow -> max finite (else -> inf)
};

constexpr MiniFloat kFp16{5, 10, 15, 0x7bff, 0x7e00, true, false};
constexpr MiniFloat kE4M3{4, 3, 7, 0x7e, 0x7f, false, true};
constexpr MiniFloat kE5M2{5, 2, 15, 0x7b, 0x7e, true, true};

constexpr int total_bits(const MiniFloat& f) { return 1 + f.exponent_bits + f.mantissa_bits; }

uint32_t encode(const MiniFloat& f, float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint32_t sign = (u >> 31) << (total_bits(f) - 1);
  const uint32_t abs_bits = u & 0x7fffffffu;
  const uint32_t inf_code = ((1u << f.exponent_bits) - 1) << f.mantissa_bits;
  if (abs_bits > 0x7f800000u) return sign | f.nan_code;
  if (abs_bits == 0x7f800000u) return sign | (f.has_inf ? inf_code : f.max_finite_code);

  const float a = std::bit_cast<float>(abs_bits);
  const int min_normal_exp = 1 - f.bias;
  uint32_t code;
  if (a < std::ldexp(1.0f, min_normal_exp)) {
    // Subnormal result: the code is |x| in units of the smallest subnormal, rounded to even.
    // A result that rounds up to 2^mantissa_bits is exactly the smallest normal's code.
    code = static_cast<uint32_t>(std::nearbyint(std::ldexp(a, f.mantissa_bits - min_normal_exp)));
  } else {
    const int shift = 23 - f.mantissa_bits;
    const uint32_t rounded = abs_bits + ((1u << (shift - 1)) - 1) + ((abs_bits >> shift) & 1u);
    code = (rounded >> shift) - (static_cast<uint32_t>(127 - f.bias) << f.mantissa_bits);
    // Rounding past the largest finite value: saturate, or become inf.
    const bool overflow = f.has_inf ? code >= inf_code : code > f.max_finite_code;
    if (overflow) code = f.saturate || !f.has_inf ? f.max_finite_code : inf_code;
  }
  return sign | code;
}

float decode(const MiniFloat& f, uint32_t code) {
  const int sign_shift = total_bits(f) - 1;
  const float sign = (code >> sign_shift) & 1u ? -1.0f : 1.0f;
  const uint32_t magnitude = code & ((1u << sign_shift) - 1);
  const uint32_t exponent = magnitude >> f.mantissa_bits;
  const uint32_t mantissa = magnitude & ((1u << f.mantissa_bits) - 1);
  const uint32_t max_exponent = (1u << f.exponent_bits) - 1;
  if (f.has_inf && exponent == max_exponent)
    return mantissa == 0 ? sign * INFINITY : std::copysign(NAN, sign);
  if (!f.has_inf && magnitude == f.nan_code) return std::copysign(NAN, sign);
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), 1 - f.bias - f.mantissa_bits);
  return sign * std::ldexp(static_cast<float>(mantissa | (1u << f.mantissa_bits)),
                           static_cast<int>(exponent) - f.bias - f.mantissa_bits);
}

}  // namespace

const uint16_t* e4m3_magnitude_to_bf16_table() {
  alignas(64) static const std::array<uint16_t, 128> table = [] {
    std::array<uint16_t, 128> t{};
    for (uint32_t c = 0; c < 128; ++c) t[c] = float_to_bf16(decode(kE4M3, c)).bits;
    return t;
  }();
  return table.data();
}

const float* e4m3_to_float_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (uint32_t c = 0; c < 256; ++c) t[c] = decode(kE4M3, c);
    return t;
  }();
  return table.data();
}

const uint8_t* e4m3_magnitude_to_bf16_bytes() {
  alignas(64) static const std::array<uint8_t, 256> bytes = [] {
    std::array<uint8_t, 256> b{};
    const uint16_t* codes = e4m3_magnitude_to_bf16_table();
    for (int c = 0; c < 128; ++c) {
      b[c] = static_cast<uint8_t>(codes[c] & 0xff);
      b[128 + c] = static_cast<uint8_t>(codes[c] >> 8);
    }
    return b;
  }();
  return bytes.data();
}

float fp16_to_float(fp16 v) { return decode(kFp16, v.bits); }
fp16 float_to_fp16(float x) { return fp16{static_cast<uint16_t>(encode(kFp16, x))}; }
float fp8_e4m3_to_float(fp8_e4m3 v) { return decode(kE4M3, v.bits); }
fp8_e4m3 float_to_fp8_e4m3(float x) { return fp8_e4m3{static_cast<uint8_t>(encode(kE4M3, x))}; }
float fp8_e5m2_to_float(fp8_e5m2 v) { return decode(kE5M2, v.bits); }
fp8_e5m2 float_to_fp8_e5m2(float x) { return fp8_e5m2{static_cast<uint8_t>(encode(kE5M2, x))}; }

}  // namespace cachalot
