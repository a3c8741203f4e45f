#include <gtest/gtest.h>

#include <map>

#include "core/error.h"
#include "model/sampler.h"

namespace cachalot::model {
namespace {

TEST(Sampler, GreedyPicksTheLargestLogit) {
  const float logits[] = {0.1f, 2.0f, -1.0f, 1.9f};
  Sampler s({});
  EXPECT_EQ(s.sample(logits, 4), 1);
}

TEST(Sampler, SeededSamplingIsReproducibleAndFollowsTheDistribution) {
  const float logits[] = {0.0f, std::log(2.0f), std::log(7.0f), -50.0f};  // p = 0.1, 0.2, 0.7, ~0
  std::map<int32_t, int> counts;
  Sampler a({.temperature = 1.0f, .seed = 42}), b({.temperature = 1.0f, .seed = 42});
  for (int i = 0; i < 20000; ++i) {
    const int32_t t = a.sample(logits, 4);
    ASSERT_EQ(t, b.sample(logits, 4));
    ++counts[t];
  }
  EXPECT_NEAR(counts[0] / 20000.0, 0.1, 0.015);
  EXPECT_NEAR(counts[1] / 20000.0, 0.2, 0.015);
  EXPECT_NEAR(counts[2] / 20000.0, 0.7, 0.015);
  EXPECT_EQ(counts[3], 0);
}

TEST(Sampler, TopKAndTopPRestrictTheCandidates) {
  const float logits[] = {0.0f, std::log(2.0f), std::log(7.0f), std::log(3.0f)};  // p = .077 .154 .538 .231
  Sampler top_k({.temperature = 1.0f, .top_k = 2, .seed = 1});
  Sampler top_p({.temperature = 1.0f, .top_p = 0.7f, .seed = 1});  // {2, 3} reach 0.77
  for (int i = 0; i < 2000; ++i) {
    const int32_t k = top_k.sample(logits, 4), p = top_p.sample(logits, 4);
    EXPECT_TRUE(k == 2 || k == 3) << k;
    EXPECT_TRUE(p == 2 || p == 3) << p;
  }
}

TEST(Sampler, RejectsOutOfRangeParameters) {
  EXPECT_THROW(Sampler({.temperature = -1.0f}), Error);
  EXPECT_THROW(Sampler({.temperature = 1.0f, .top_p = 0.0f}), Error);
  EXPECT_THROW(Sampler({.top_k = -2}), Error);
}

}  // namespace
}  // namespace cachalot::model
