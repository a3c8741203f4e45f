// add_scaled and weighted_sum: the AVX-512 path gives exactly the plain loop's results (mul then
// add), for every tail length and for F32 and BF16 rows; weighted_sum gives the bits of zeroing
// y and calling add_scaled once per row.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/isa.h"
#include "core/vector_ops.h"

namespace cachalot {
namespace {

// Bit-for-bit equality (memcmp is not called on an empty vector's null data).
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

TEST(VectorOps, AddScaledMatchesThePlainLoopOnEveryPath) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  for (const size_t n : {0u, 1u, 15u, 16u, 17u, 100u, 7168u}) {
    std::vector<float> x(n), y(n);
    std::vector<bf16> xb(n);
    for (size_t i = 0; i < n; ++i) {
      x[i] = u(rng);
      y[i] = u(rng);
      xb[i] = float_to_bf16(u(rng));
    }
    const float w = 0.37f;
    std::vector<float> want_f = y, want_b = y;
    for (size_t i = 0; i < n; ++i) {
      want_f[i] += w * x[i];
      want_b[i] += w * bf16_to_float(xb[i]);
    }
    std::vector<float> got = y;
    vector_kernels::portable::add_scaled(got.data(), x.data(), w, n);
    EXPECT_TRUE(same_bits(got, want_f)) << n;
    got = y;
    vector_kernels::portable::add_scaled(got.data(), xb.data(), w, n);
    EXPECT_TRUE(same_bits(got, want_b)) << n;
    if (!cpu_features().has_avx512_kernels()) continue;
    got = y;
    vector_kernels::avx512::add_scaled(got.data(), x.data(), w, n);
    EXPECT_TRUE(same_bits(got, want_f)) << "avx512 " << n;
    got = y;
    vector_kernels::avx512::add_scaled(got.data(), xb.data(), w, n);
    EXPECT_TRUE(same_bits(got, want_b)) << "avx512 bf16 " << n;
  }
}

TEST(VectorOps, WeightedSumIsAddScaledRowByRowOnEveryPath) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  for (const size_t n : {0u, 1u, 15u, 16u, 17u, 63u, 64u, 65u, 100u, 7168u}) {
    for (const size_t rows : {0u, 1u, 2u, 3u, 8u}) {
      std::vector<std::vector<float>> xf(rows, std::vector<float>(n));
      std::vector<std::vector<bf16>> xb(rows, std::vector<bf16>(n));
      std::vector<const float*> pf;
      std::vector<const bf16*> pb;
      std::vector<float> w;
      for (size_t r = 0; r < rows; ++r) {
        for (size_t i = 0; i < n; ++i) {
          xf[r][i] = u(rng);
          xb[r][i] = float_to_bf16(u(rng));
        }
        pf.push_back(xf[r].data());
        pb.push_back(xb[r].data());
        w.push_back(r == 1 ? 1.0f : u(rng));
      }
      std::vector<float> want_f(n, 0.0f), want_b(n, 0.0f);
      for (size_t r = 0; r < rows; ++r) {
        vector_kernels::portable::add_scaled(want_f.data(), xf[r].data(), w[r], n);
        vector_kernels::portable::add_scaled(want_b.data(), xb[r].data(), w[r], n);
      }
      std::vector<float> got(n, 99.0f);  // every element is written
      vector_kernels::portable::weighted_sum(got.data(), pf.data(), w.data(), rows, n);
      EXPECT_TRUE(same_bits(got, want_f)) << n << " x " << rows;
      std::fill(got.begin(), got.end(), 99.0f);
      vector_kernels::portable::weighted_sum(got.data(), pb.data(), w.data(), rows, n);
      EXPECT_TRUE(same_bits(got, want_b)) << n << " x " << rows;
      if (!cpu_features().has_avx512_kernels()) continue;
      std::fill(got.begin(), got.end(), 99.0f);
      vector_kernels::avx512::weighted_sum(got.data(), pf.data(), w.data(), rows, n);
      EXPECT_TRUE(same_bits(got, want_f)) << "avx512 " << n << " x " << rows;
      std::fill(got.begin(), got.end(), 99.0f);
      vector_kernels::avx512::weighted_sum(got.data(), pb.data(), w.data(), rows, n);
      EXPECT_TRUE(same_bits(got, want_b)) << "avx512 bf16 " << n << " x " << rows;
    }
  }
}

TEST(VectorOps, AbsMaxSkipsNaNsLikeThePlainLoopOnEveryPath) {
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  for (const size_t n : {0u, 1u, 15u, 16u, 17u, 63u, 64u, 65u, 128u, 7168u}) {
    std::vector<float> x(n);
    for (float& v : x) v = u(rng);
    if (n > 3) {
      x[n / 2] = std::numeric_limits<float>::quiet_NaN();
      x[n - 1] = -5.5f;  // the largest magnitude, negative, in the tail
    }
    float want = 0.0f;
    for (const float v : x) want = std::max(want, std::fabs(v));
    EXPECT_EQ(vector_kernels::portable::abs_max(x.data(), n), want) << n;
    if (n > 3) {
      EXPECT_EQ(want, 5.5f);
    }
    if (cpu_features().has_avx512_kernels()) {
      EXPECT_EQ(vector_kernels::avx512::abs_max(x.data(), n), want) << "avx512 " << n;
    }
  }
}

}  // namespace
}  // namespace cachalot
