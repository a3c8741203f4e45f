// The scalar encodings against independent references: decoding from the format's definition
// (computed in double), encoding by brute force over every code (nearest value, ties to the
// even code, saturation past the largest finite value).
#include "core/float_formats.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace cachalot {
namespace {

struct Format {
  int exponent_bits, mantissa_bits, bias;
  bool ieee_specials;  // all-ones exponent = inf/NaN (E5M2, FP16); else only 0x7F is NaN (E4M3)
};
constexpr Format kE4M3{4, 3, 7, false};
constexpr Format kE5M2{5, 2, 15, true};
constexpr Format kF16{5, 10, 15, true};

// Value of a code from the format's definition, in double.
double reference_decode(const Format& f, uint32_t code) {
  const int bits = 1 + f.exponent_bits + f.mantissa_bits;
  const double sign = (code >> (bits - 1)) & 1 ? -1.0 : 1.0;
  const uint32_t e = (code >> f.mantissa_bits) & ((1u << f.exponent_bits) - 1);
  const uint32_t m = code & ((1u << f.mantissa_bits) - 1);
  const uint32_t e_max = (1u << f.exponent_bits) - 1;
  if (f.ieee_specials && e == e_max) return m == 0 ? sign * INFINITY : NAN;
  if (!f.ieee_specials && e == e_max && m == (1u << f.mantissa_bits) - 1) return NAN;
  const double frac = static_cast<double>(m) / (1 << f.mantissa_bits);
  return e == 0 ? sign * std::ldexp(frac, 1 - f.bias) : sign * std::ldexp(1.0 + frac, static_cast<int>(e) - f.bias);
}

// Nearest finite code to x by brute force; ties to the even code; saturates for 8-bit formats.
uint32_t reference_encode(const Format& f, double x, bool saturate) {
  const int bits = 1 + f.exponent_bits + f.mantissa_bits;
  const uint32_t sign = std::signbit(x) ? 1u << (bits - 1) : 0;
  const double a = std::fabs(x);
  uint32_t best = 0;
  double best_err = INFINITY, max_finite = 0;
  uint32_t max_code = 0;
  for (uint32_t code = 0; code < (1u << (bits - 1)); ++code) {
    const double v = reference_decode(f, code);
    if (!std::isfinite(v)) continue;
    if (v > max_finite) max_finite = v, max_code = code;
    const double err = std::fabs(v - a);
    if (err < best_err || (err == best_err && (code & 1) == 0)) best = code, best_err = err;
  }
  if (a > max_finite) {
    if (saturate) return sign | max_code;
    // IEEE: overflow to inf once |x| reaches max + half an ulp (rounding away from max).
    const double half_ulp = std::ldexp(1.0, (1 << (f.exponent_bits - 1)) - 1 - f.mantissa_bits - 1);
    if (a >= max_finite + half_ulp) return sign | (((1u << f.exponent_bits) - 1) << f.mantissa_bits);
    return sign | max_code;
  }
  return sign | best;
}

bool is_nan_code(const Format& f, uint32_t code) { return std::isnan(reference_decode(f, code)); }

TEST(Fp8E4M3, DecodesAll256Codes) {
  for (uint32_t code = 0; code < 256; ++code) {
    const float got = fp8_e4m3_to_float(fp8_e4m3{static_cast<uint8_t>(code)});
    const double want = reference_decode(kE4M3, code);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << code;
      EXPECT_TRUE(code == 0x7f || code == 0xff) << code;
    } else {
      EXPECT_EQ(static_cast<double>(got), want) << "code " << code;
      EXPECT_EQ(std::signbit(got), code >= 0x80) << code;
    }
  }
  EXPECT_EQ(fp8_e4m3_to_float(fp8_e4m3{0x7e}), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_float(fp8_e4m3{0x01}), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(fp8_e4m3_to_float(fp8_e4m3{0x08}), std::ldexp(1.0f, -6));  // smallest normal
}

TEST(Fp8E4M3, EncodesEveryValueBackToItsCode) {
  for (uint32_t code = 0; code < 256; ++code) {
    if (is_nan_code(kE4M3, code)) continue;
    const float v = fp8_e4m3_to_float(fp8_e4m3{static_cast<uint8_t>(code)});
    EXPECT_EQ(float_to_fp8_e4m3(v).bits, code) << v;
  }
}

TEST(Fp8E4M3, TiesRoundToEvenAndNeighboursToNearest) {
  for (uint32_t code = 0; code < 0x7e; ++code) {
    const float lo = fp8_e4m3_to_float(fp8_e4m3{static_cast<uint8_t>(code)});
    const float hi = fp8_e4m3_to_float(fp8_e4m3{static_cast<uint8_t>(code + 1)});
    const float mid = (lo + hi) / 2;  // exact in float32
    const uint32_t even = code % 2 == 0 ? code : code + 1;
    EXPECT_EQ(float_to_fp8_e4m3(mid).bits, even) << "tie between " << lo << " and " << hi;
    EXPECT_EQ(float_to_fp8_e4m3(-mid).bits, even | 0x80);
    EXPECT_EQ(float_to_fp8_e4m3(std::nextafter(mid, 0.0f)).bits, code);
    EXPECT_EQ(float_to_fp8_e4m3(std::nextafter(mid, 1e9f)).bits, code + 1);
  }
}

TEST(Fp8E4M3, SubnormalsAndZero) {
  const float tiny = std::ldexp(1.0f, -9);
  EXPECT_EQ(float_to_fp8_e4m3(tiny).bits, 0x01);
  EXPECT_EQ(float_to_fp8_e4m3(tiny / 2).bits, 0x00);         // tie -> even (zero)
  EXPECT_EQ(float_to_fp8_e4m3(tiny * 0.75f).bits, 0x01);
  EXPECT_EQ(float_to_fp8_e4m3(tiny * 1.5f).bits, 0x02);      // tie between 1 and 2 -> 2
  EXPECT_EQ(float_to_fp8_e4m3(tiny * 2.5f).bits, 0x02);      // tie between 2 and 3 -> 2
  EXPECT_EQ(float_to_fp8_e4m3(-tiny / 4).bits, 0x80);         // negative zero keeps its sign
  EXPECT_EQ(float_to_fp8_e4m3(std::numeric_limits<float>::denorm_min()).bits, 0x00);
  EXPECT_EQ(float_to_fp8_e4m3(std::ldexp(7.5f, -9)).bits, 0x08);  // rounds up into the normals
}

TEST(Fp8E4M3, SaturatesAndKeepsNaN) {
  for (float v : {448.0f, 449.0f, 464.0f, 465.0f, 480.0f, 1e6f, 3.4e38f, INFINITY}) {
    EXPECT_EQ(float_to_fp8_e4m3(v).bits, 0x7e) << v;
    EXPECT_EQ(float_to_fp8_e4m3(-v).bits, 0xfe) << -v;
  }
  EXPECT_EQ(float_to_fp8_e4m3(NAN).bits, 0x7f);
  EXPECT_EQ(float_to_fp8_e4m3(-NAN).bits, 0xff);
}

TEST(Fp8E5M2, DecodesAll256Codes) {
  for (uint32_t code = 0; code < 256; ++code) {
    const float got = fp8_e5m2_to_float(fp8_e5m2{static_cast<uint8_t>(code)});
    const double want = reference_decode(kE5M2, code);
    if (std::isnan(want))
      EXPECT_TRUE(std::isnan(got)) << code;
    else
      EXPECT_EQ(static_cast<double>(got), want) << "code " << code;
  }
  EXPECT_EQ(fp8_e5m2_to_float(fp8_e5m2{0x7b}), 57344.0f);
  EXPECT_TRUE(std::isinf(fp8_e5m2_to_float(fp8_e5m2{0x7c})));
}

TEST(Fp8E5M2, RoundTripsTiesSaturationInfNaN) {
  for (uint32_t code = 0; code < 256; ++code) {
    if (is_nan_code(kE5M2, code)) continue;
    EXPECT_EQ(float_to_fp8_e5m2(fp8_e5m2_to_float(fp8_e5m2{static_cast<uint8_t>(code)})).bits, code);
  }
  for (uint32_t code = 0; code < 0x7b; ++code) {
    const float mid = (fp8_e5m2_to_float(fp8_e5m2{static_cast<uint8_t>(code)}) +
                       fp8_e5m2_to_float(fp8_e5m2{static_cast<uint8_t>(code + 1)})) / 2;
    EXPECT_EQ(float_to_fp8_e5m2(mid).bits, code % 2 == 0 ? code : code + 1);
  }
  EXPECT_EQ(float_to_fp8_e5m2(60000.0f).bits, 0x7b);
  EXPECT_EQ(float_to_fp8_e5m2(-1e30f).bits, 0xfb);
  EXPECT_EQ(float_to_fp8_e5m2(INFINITY).bits, 0x7c);
  EXPECT_EQ(float_to_fp8_e5m2(-INFINITY).bits, 0xfc);
  EXPECT_TRUE(is_nan_code(kE5M2, float_to_fp8_e5m2(NAN).bits));
  EXPECT_EQ(float_to_fp8_e5m2(-NAN).bits & 0x80, 0x80);
  EXPECT_EQ(float_to_fp8_e5m2(std::ldexp(1.0f, -17)).bits, 0x00);  // half the smallest subnormal: tie -> 0
  EXPECT_EQ(float_to_fp8_e5m2(std::ldexp(1.0f, -16)).bits, 0x01);
}

// Random floats over the whole exponent range against the brute-force encoder.
TEST(Fp8, RandomValuesMatchBruteForceNearest) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-22, 18);
  for (int i = 0; i < 20000; ++i) {
    const float x = std::ldexp(mantissa(rng), exponent(rng));
    ASSERT_EQ(float_to_fp8_e4m3(x).bits, reference_encode(kE4M3, x, true)) << x;
    ASSERT_EQ(float_to_fp8_e5m2(x).bits, reference_encode(kE5M2, x, true)) << x;
  }
}

TEST(Fp16, AllCodesRoundTripAndMatchReference) {
  for (uint32_t code = 0; code < 65536; ++code) {
    const float v = fp16_to_float(fp16{static_cast<uint16_t>(code)});
    const double want = reference_decode(kF16, code);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(v)) << code;
      ASSERT_TRUE(std::isnan(fp16_to_float(float_to_fp16(v))));
      continue;
    }
    ASSERT_EQ(static_cast<double>(v), want) << code;
    ASSERT_EQ(float_to_fp16(v).bits, code) << v;
  }
  EXPECT_EQ(float_to_fp16(65504.0f).bits, 0x7bff);
  EXPECT_EQ(float_to_fp16(65519.0f).bits, 0x7bff);
  EXPECT_EQ(float_to_fp16(65520.0f).bits, 0x7c00);  // IEEE: overflows to inf at the half-ulp
  EXPECT_EQ(float_to_fp16(-1e9f).bits, 0xfc00);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-26, 17);
  for (int i = 0; i < 2000; ++i) {
    const float x = std::ldexp(mantissa(rng), exponent(rng));
    ASSERT_EQ(float_to_fp16(x).bits, reference_encode(kF16, x, false)) << x;
  }
}

TEST(Bf16, RoundsToNearestEvenAndKeepsSpecials) {
  EXPECT_EQ(float_to_bf16(1.0f).bits, 0x3f80);
  EXPECT_EQ(float_to_bf16(std::bit_cast<float>(0x3f808000u)).bits, 0x3f80);  // tie -> even
  EXPECT_EQ(float_to_bf16(std::bit_cast<float>(0x3f818000u)).bits, 0x3f82);  // tie -> even (up)
  EXPECT_EQ(float_to_bf16(std::bit_cast<float>(0x3f808001u)).bits, 0x3f81);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()).bits, 0x7f80);  // rounds to inf
  EXPECT_EQ(float_to_bf16(-INFINITY).bits, 0xff80);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(NAN))));
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::bit_cast<float>(0x7f800001u)))));  // sNaN stays NaN
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::denorm_min()).bits, 0x0000);
  EXPECT_EQ(float_to_bf16(std::bit_cast<float>(0x00018000u)).bits, 0x0002);  // denormal tie -> even
  for (uint32_t code = 0; code < 65536; ++code) {
    const float v = bf16_to_float(bf16{static_cast<uint16_t>(code)});
    if (!std::isnan(v)) {
      ASSERT_EQ(float_to_bf16(v).bits, code);
    }
  }
}

}  // namespace
}  // namespace cachalot
