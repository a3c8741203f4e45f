#include "gemm/quantize.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
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

TEST(Quantize, RejectsBadInputs) {
  EXPECT_THROW(quantize_activations(Tensor::zeros(DType::kI32, {2, 2})), Error);
  EXPECT_THROW(quantize_weights(Tensor::zeros(DType::kF32, {2, 2, 2})), Error);
  const Fp8Tensor q = quantize_activations(testing::random_f32(2, 256, 4));
  EXPECT_THROW(dequantize_activations(q.data, Tensor::zeros(DType::kF32, {2, 3})), Error);
  EXPECT_THROW(dequantize_weights(q.data, q.scales), Error);  // [2,2] is not [1,2]
}

}  // namespace
}  // namespace cachalot::gemm
