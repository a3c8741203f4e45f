#include "gemm/quantize.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "core/error.h"
#include "core/isa.h"
#include "tests/gemm/gemm_reference.h"

namespace cachalot::gemm {
namespace {

TEST(Quantize, ActivationScalesMapEachGroupsMaximumTo448) {
  const Tensor x = testing::random_f32(5, 300, 1);  // 3 groups, the last partial (44 wide)
  const Fp8Tensor q = quantize_activations(x);
  ASSERT_EQ(q.scales.shape(), (Dims{5, 3}));
  for (int64_t r = 0; r < 5; ++r)
    for (int64_t g = 0; g < 3; ++g) {
      float amax = 0, qmax = 0;
      for (int64_t c = g * 128; c < std::min<int64_t>(300, (g + 1) * 128); ++c) {
        amax = std::max(amax, std::fabs(x.at<float>(r, c)));
        qmax = std::max(qmax, std::fabs(testing::fp8_value(q.data, r, c)));
      }
      EXPECT_FLOAT_EQ(q.scales.at<float>(r, g), amax / 448.0f);
      EXPECT_EQ(qmax, 448.0f);
    }
  // Each value is within half an FP8 step (relative 2^-4) of the original, after scaling.
  const Tensor back = dequantize_activations(q.data, q.scales);
  for (int64_t r = 0; r < 5; ++r)
    for (int64_t c = 0; c < 300; ++c) {
      const float s = q.scales.at<float>(r, c / 128);
      EXPECT_LE(std::fabs(back.at<float>(r, c) - x.at<float>(r, c)),
                std::max(std::fabs(x.at<float>(r, c)) / 16.0f, s * std::ldexp(1.0f, -9)) * 1.0001f);
    }
}

TEST(Quantize, Ue8m0ScalesArePowersOfTwoAtLeastTheFloatScale) {
  const Tensor x = testing::random_f32(3, 256, 2, 3.0f);
  const Fp8Tensor f = quantize_activations(x, ScaleFormat::kFloat);
  const Fp8Tensor p = quantize_activations(x, ScaleFormat::kUe8m0);
  for (int64_t i = 0; i < 6; ++i) {
    const float s = p.scales.data<float>()[i];
    int e;
    EXPECT_EQ(std::frexp(s, &e), 0.5f) << s;
    EXPECT_GE(s, f.scales.data<float>()[i]);
    EXPECT_LT(s, 2 * f.scales.data<float>()[i]);
  }
}

TEST(Quantize, WeightBlocksIncludingPartialOnes) {
  const Tensor w = testing::random_f32(160, 200, 3);  // blocks 2 x 2, the second of each partial
  const Fp8Tensor q = quantize_weights(w);
  ASSERT_EQ(q.scales.shape(), (Dims{2, 2}));
  for (int64_t bn = 0; bn < 2; ++bn)
    for (int64_t bk = 0; bk < 2; ++bk) {
      float amax = 0;
      for (int64_t r = bn * 128; r < std::min<int64_t>(160, bn * 128 + 128); ++r)
        for (int64_t c = bk * 128; c < std::min<int64_t>(200, bk * 128 + 128); ++c)
          amax = std::max(amax, std::fabs(w.at<float>(r, c)));
      EXPECT_FLOAT_EQ(q.scales.at<float>(bn, bk), amax / 448.0f);
    }
  const Tensor back = dequantize_weights(q.data, q.scales);
  EXPECT_LT(testing::relative_norm_error(back.data<float>(), w.data<float>(), 160 * 200), 0.04);
}

TEST(Quantize, ZeroGroupsAndBf16Input) {
  Tensor x = Tensor::zeros(DType::kBF16, {2, 130});
  x.mutable_at<bf16>(1, 129) = float_to_bf16(-2.0f);
  const Fp8Tensor q = quantize_activations(x);
  EXPECT_FLOAT_EQ(q.scales.at<float>(0, 0), 1e-4f / 448.0f);
  EXPECT_EQ(testing::fp8_value(q.data, 0, 5), 0.0f);
  EXPECT_FLOAT_EQ(q.scales.at<float>(1, 1), 2.0f / 448.0f);
  EXPECT_EQ(testing::fp8_value(q.data, 1, 129), -448.0f);
}

// The activation quantizer's AVX-512 rows (a float add rounds to E4M3) against the portable path
// (group by group through core's convert), bit for bit.
class QuantizeIsaAgreement : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cpu_features().has_avx512_kernels()) GTEST_SKIP() << "no AVX-512 on this CPU";
  }
  void TearDown() override { set_active_isa(Isa::kAvx512); }

  static void expect_same(const Tensor& x, const char* what) {
    for (const ScaleFormat format : {ScaleFormat::kFloat, ScaleFormat::kUe8m0}) {
      set_active_isa(Isa::kPortable);
      const Fp8Tensor want = quantize_activations(x, format);
      set_active_isa(Isa::kAvx512);
      const Fp8Tensor got = quantize_activations(x, format);
      const auto* w = static_cast<const uint8_t*>(want.data.raw_data());
      const auto* g = static_cast<const uint8_t*>(got.data.raw_data());
      int64_t mismatches = 0;
      for (int64_t i = 0; i < x.numel(); ++i)
        if (w[i] != g[i] && mismatches++ < 5)
          ADD_FAILURE() << what << ": value " << i << " (row " << i / x.size(1) << ") encodes to " << int(g[i])
                        << ", portable " << int(w[i]);
      EXPECT_EQ(mismatches, 0) << what;
      EXPECT_EQ(std::memcmp(want.scales.raw_data(), got.scales.raw_data(), want.scales.numel() * sizeof(float)), 0)
          << what << ": scales differ";
    }
  }
};

TEST_F(QuantizeIsaAgreement, EveryBf16ValueInOrderAndShuffled) {
  // All 65536 codes: in order, each group spans a narrow range (two groups are the infinities
  // and NaNs, which take the general path); shuffled, groups mix magnitudes, so small values
  // land on E4M3's subnormal codes.
  std::vector<uint16_t> codes(65536);
  std::iota(codes.begin(), codes.end(), uint16_t{0});
  Tensor x = Tensor::empty(DType::kBF16, {64, 1024});
  std::memcpy(x.mutable_raw_data(), codes.data(), codes.size() * 2);
  expect_same(x, "bf16 in order");
  std::shuffle(codes.begin(), codes.end(), std::mt19937(7));
  std::memcpy(x.mutable_raw_data(), codes.data(), codes.size() * 2);
  expect_same(x, "bf16 shuffled");
}

TEST_F(QuantizeIsaAgreement, TiesSubnormalsSignsAndPartialGroups) {
  // Groups whose amax is 448 (factor 1), so each value is encoded as it is: every E4M3 midpoint
  // of both signs (ties round to even), normal and subnormal, and values a hair either side.
  std::vector<float> v;
  for (int code = 0; code < 0x7e; ++code) {
    const float lo = fp8_e4m3_to_float(fp8_e4m3{static_cast<uint8_t>(code)});
    const float hi = fp8_e4m3_to_float(fp8_e4m3{static_cast<uint8_t>(code + 1)});
    const float mid = (lo + hi) / 2;
    for (const float f : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1000.0f), lo})
      for (const float sign : {1.0f, -1.0f}) v.push_back(sign * f);
  }
  const int64_t k = 1000;  // seven full groups and a partial one of 104
  const int64_t rows = (static_cast<int64_t>(v.size()) + k - 2) / (k - 8) + 1;
  Tensor x = Tensor::zeros(DType::kF32, {rows, k});
  size_t next = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < k; ++c) {
      float* p = x.mutable_data<float>() + r * k + c;
      if (c % 128 == 0) *p = (r % 2 ? -448.0f : 448.0f);  // each group's amax
      else if (next < v.size()) *p = v[next++];
    }
  // Some groups with an infinity or a NaN, and all-zero and tiny groups.
  x.mutable_data<float>()[3 * 128 + 5] = INFINITY;
  x.mutable_data<float>()[k + 2 * 128 + 7] = NAN;
  for (int64_t c = 0; c < 128; ++c) x.mutable_data<float>()[2 * k + 4 * 128 + c] = c % 3 ? 0.0f : -0.0f;
  for (int64_t c = 0; c < 128; ++c) x.mutable_data<float>()[2 * k + 5 * 128 + c] = std::ldexp(float(c), -140);
  expect_same(x, "f32 ties");
  // F32 values with low mantissa bits (BF16 drops them), at random magnitudes.
  std::mt19937 rng(3);
  Tensor y = Tensor::empty(DType::kF32, {16, 2048 + 77});
  for (int64_t i = 0; i < y.numel(); ++i) {
    const float f = std::ldexp(1.0f + float(rng() % (1 << 23)) / float(1 << 23), int(rng() % 40) - 30);
    y.mutable_data<float>()[i] = rng() % 2 ? f : -f;
  }
  expect_same(y, "f32 random");
  Tensor b = Tensor::empty(DType::kBF16, {3, 77});  // under one group
  for (int64_t i = 0; i < b.numel(); ++i) b.mutable_data<bf16>()[i] = float_to_bf16(y.data<float>()[i]);
  expect_same(b, "bf16 partial only");
}

TEST(Quantize, RejectsBadInputs) {
  EXPECT_THROW(quantize_activations(Tensor::zeros(DType::kI32, {2, 2})), Error);
  EXPECT_THROW(quantize_weights(Tensor::zeros(DType::kF32, {2, 2, 2})), Error);
  const Fp8Tensor q = quantize_activations(testing::random_f32(2, 256, 4));
  EXPECT_THROW(dequantize_activations(q.data, Tensor::zeros(DType::kF32, {2, 3})), Error);
  EXPECT_THROW(dequantize_weights(q.data, q.scales), Error);  // [2,2] is not [1,2]
}

}  // namespace
}  // namespace cachalot::gemm
