// The bulk conversions: the AVX-512 kernels and the portable loops give exactly the scalar
// codes, on every 8/16-bit code and on float32 inputs of every kind, at lengths that exercise
// the vector tails.
#include "core/convert.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/isa.h"

namespace cachalot {
namespace {

// Float32 inputs of every kind: random bit patterns (NaNs, infs, denormals included), values
// around the FP8 ranges, and every FP8 midpoint (ties).
std::vector<float> hard_inputs() {
  std::vector<float> v;
  std::mt19937 rng(11);
  for (int i = 0; i < 20000; ++i) v.push_back(std::bit_cast<float>(static_cast<uint32_t>(rng())));
  std::uniform_real_distribution<float> m(-1.0f, 1.0f);
  std::uniform_int_distribution<int> e(-20, 18);
  for (int i = 0; i < 20000; ++i) v.push_back(std::ldexp(m(rng), e(rng)));
  for (int code = 0; code < 255; ++code) {
    const float a = fp8_e4m3_to_float(fp8_e4m3{static_cast<uint8_t>(code)});
    const float b = fp8_e4m3_to_float(fp8_e4m3{static_cast<uint8_t>(code + 1)});
    v.push_back((a + b) / 2);
    const float c = fp8_e5m2_to_float(fp8_e5m2{static_cast<uint8_t>(code)});
    const float d = fp8_e5m2_to_float(fp8_e5m2{static_cast<uint8_t>(code + 1)});
    v.push_back((c + d) / 2);
  }
  for (float s : {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 448.0f, 464.0f, 57344.0f, 61440.0f,
                  std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::max()})
    v.push_back(s);
  return v;
}

template <typename T>
uint32_t bits_of(T v) {
  return v.bits;
}

bool same_float(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b) && std::signbit(a) == std::signbit(b);
  return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
}

using Kernel = void (*)(const float*, void*, size_t);

class ConvertTest : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (GetParam() == Isa::kAvx512 && !cpu_features().has_avx512_kernels())
      GTEST_SKIP() << "this CPU has no AVX-512 BF16; the portable path is tested alone";
    set_active_isa(GetParam());
  }
  void TearDown() override { set_active_isa(cpu_features().has_avx512_kernels() ? Isa::kAvx512 : Isa::kPortable); }
};

// Encoding float32 -> small format equals the scalar function, for each length's tail.
template <typename Code, Code (*Scalar)(float)>
void check_encode(const std::vector<float>& inputs, bool fp16_nan_any) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{33}, inputs.size()}) {
    std::vector<Code> out(n + 1, Code{static_cast<decltype(Code::bits)>(0x5a)});
    convert(inputs.data(), out.data(), n);
    for (size_t i = 0; i < n; ++i) {
      const Code want = Scalar(inputs[i]);
      if (fp16_nan_any && std::isnan(inputs[i])) {
        // vcvtps2ph keeps NaN payload bits: any NaN code with the right sign is right.
        EXPECT_TRUE(std::isnan(fp16_to_float(fp16{static_cast<uint16_t>(bits_of(out[i]))})));
        continue;
      }
      ASSERT_EQ(bits_of(out[i]), bits_of(want)) << "input " << inputs[i] << " (bits 0x" << std::hex
                                                << std::bit_cast<uint32_t>(inputs[i]) << ") n=" << std::dec << n;
    }
    EXPECT_EQ(bits_of(out[n]), 0x5au) << "wrote past the end, n=" << n;
  }
}

TEST_P(ConvertTest, FloatToBf16) { check_encode<bf16, float_to_bf16>(hard_inputs(), false); }
TEST_P(ConvertTest, FloatToFp16) { check_encode<fp16, float_to_fp16>(hard_inputs(), true); }
TEST_P(ConvertTest, FloatToE4M3) { check_encode<fp8_e4m3, float_to_fp8_e4m3>(hard_inputs(), false); }
TEST_P(ConvertTest, FloatToE5M2) { check_encode<fp8_e5m2, float_to_fp8_e5m2>(hard_inputs(), false); }

// Scaled encoding is the scalar encoder of the float32 product, at every tail length and for
// scales that push values into the subnormal, saturating and overflow ranges.
TEST_P(ConvertTest, FloatToE4M3Scaled) {
  const std::vector<float> inputs = hard_inputs();
  for (const float scale : {1.0f, 448.0f / 3.0f, 1e-3f, 1e30f, -2.0f}) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{128}, inputs.size()}) {
      std::vector<fp8_e4m3> out(n + 1, fp8_e4m3{0x5a});
      convert_scaled(inputs.data(), scale, out.data(), n);
      for (size_t i = 0; i < n; ++i)
        ASSERT_EQ(out[i].bits, float_to_fp8_e4m3(inputs[i] * scale).bits)
            << "input " << inputs[i] << " scale " << scale << " n=" << n;
      EXPECT_EQ(out[n].bits, 0x5a) << "wrote past the end, n=" << n;
    }
  }
}

// Decoding every code (repeated to cover tails) equals the scalar decoder.
template <typename Code, typename Out, typename Scalar>
void check_decode(int num_codes, Scalar scalar) {
  std::vector<Code> codes;
  for (int rep = 0; rep < 3; ++rep)
    for (int c = 0; c < num_codes; ++c) codes.push_back(Code{static_cast<decltype(Code::bits)>(c)});
  for (size_t n : {size_t{0}, size_t{1}, size_t{31}, size_t{32}, size_t{33}, codes.size()}) {
    std::vector<Out> out(n + 1);
    convert(codes.data(), out.data(), n);
    for (size_t i = 0; i < n; ++i) ASSERT_TRUE(scalar(codes[i], out[i])) << "code " << bits_of(codes[i]) << " n=" << n;
  }
}

TEST_P(ConvertTest, DecodeBf16) {
  check_decode<bf16, float>(65536, [](bf16 c, float got) { return same_float(got, bf16_to_float(c)); });
}
TEST_P(ConvertTest, DecodeFp16) {
  check_decode<fp16, float>(65536, [](fp16 c, float got) { return same_float(got, fp16_to_float(c)); });
}
TEST_P(ConvertTest, DecodeE4M3) {
  check_decode<fp8_e4m3, float>(256, [](fp8_e4m3 c, float got) { return same_float(got, fp8_e4m3_to_float(c)); });
}
TEST_P(ConvertTest, DecodeE4M3ToBf16) {
  check_decode<fp8_e4m3, bf16>(256, [](fp8_e4m3 c, bf16 got) {
    return same_float(bf16_to_float(got), fp8_e4m3_to_float(c));
  });
}
TEST_P(ConvertTest, DecodeE5M2) {
  check_decode<fp8_e5m2, float>(256, [](fp8_e5m2 c, float got) { return same_float(got, fp8_e5m2_to_float(c)); });
}

INSTANTIATE_TEST_SUITE_P(Isas, ConvertTest, ::testing::Values(Isa::kPortable, Isa::kAvx512),
                         [](const auto& param_info) { return std::string(isa_name(param_info.param)); });

TEST(Isa, ParsesNamesAndRejectsUnknown) {
  EXPECT_EQ(parse_isa("portable"), Isa::kPortable);
  EXPECT_EQ(parse_isa("avx512"), Isa::kAvx512);
  EXPECT_THROW(parse_isa("sse9"), Error);
}

}  // namespace
}  // namespace cachalot
