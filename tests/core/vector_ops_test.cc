// add_scaled: the AVX-512 path gives exactly the plain loop's results (mul then add), for every
// tail length and for F32 and BF16 rows.
#include <gtest/gtest.h>

#include <cstring>
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

}  // namespace
}  // namespace cachalot
