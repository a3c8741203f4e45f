#include "mla/mla_prefill.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/convert.h"
#include "core/error.h"
#include "core/isa.h"

namespace cachalot::mla {
namespace {

struct Case {
  int64_t queries, keys, heads, dn, dr, dv;
  bool causal = true;
  DType q_dtype = DType::kF32;
  DType kv_dtype = DType::kBF16;
};

Tensor random_tensor(Dims shape, DType dtype, std::mt19937& rng, float sigma) {
  Tensor t32 = Tensor::empty(DType::kF32, shape);
  std::normal_distribution<float> dist(0.0f, sigma);
  for (int64_t i = 0; i < t32.numel(); ++i) t32.mutable_data<float>()[i] = dist(rng);
  if (dtype == DType::kF32) return t32;
  Tensor t = Tensor::empty(DType::kBF16, shape);
  convert(t32.data<float>(), t.mutable_data<bf16>(), static_cast<size_t>(t.numel()));
  return t;
}

// Element i of a (possibly strided) 3-D or 2-D tensor's row, as the kernel sees it (BF16).
double bf16_value(const Tensor& t, int64_t i, int64_t j, int64_t k) {
  const int64_t offset = i * t.stride(0) + (t.dim() == 3 ? j * t.stride(1) : 0) + k;
  if (t.dtype() == DType::kBF16) return bf16_to_float(static_cast<const bf16*>(t.raw_data())[offset]);
  return bf16_to_float(float_to_bf16(static_cast<const float*>(t.raw_data())[offset]));
}

// The tensor's values as the kernel sees them (BF16), densely as [rows][heads][width].
std::vector<double> bf16_values(const Tensor& t) {
  const int64_t rows = t.size(0), heads = t.dim() == 3 ? t.size(1) : 1, width = t.size(-1);
  std::vector<double> v(static_cast<size_t>(rows * heads * width));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < heads; ++j)
      for (int64_t k = 0; k < width; ++k) v[(i * heads + j) * width + k] = bf16_value(t, i, j, k);
  return v;
}

// Plain softmax attention per head in float64 on the BF16-rounded inputs.
void reference(const Case& c, const Tensor& q_t, const Tensor& kv_t, const Tensor& rope_t, double scale,
               std::vector<double>& out, std::vector<double>& lse) {
  const std::vector<double> q = bf16_values(q_t), kv = bf16_values(kv_t), rope = bf16_values(rope_t);
  const int64_t qw = c.dn + c.dr, kvw = c.dn + c.dv;
  out.assign(static_cast<size_t>(c.queries * c.heads * c.dv), 0.0);
  lse.assign(static_cast<size_t>(c.heads * c.queries), -INFINITY);
  for (int64_t h = 0; h < c.heads; ++h)
    for (int64_t i = 0; i < c.queries; ++i) {
      const int64_t visible = c.causal ? c.keys - c.queries + i + 1 : c.keys;
      if (visible <= 0) continue;
      const double* qr = q.data() + (i * c.heads + h) * qw;
      std::vector<double> s(static_cast<size_t>(visible));
      double mx = -INFINITY;
      for (int64_t t = 0; t < visible; ++t) {
        const double* k = kv.data() + (t * c.heads + h) * kvw;
        double acc = 0;
        for (int64_t d = 0; d < c.dn; ++d) acc += qr[d] * k[d];
        for (int64_t d = 0; d < c.dr; ++d) acc += qr[c.dn + d] * rope[t * c.dr + d];
        s[t] = acc * scale;
        mx = std::max(mx, s[t]);
      }
      double sum = 0;
      for (double& x : s) sum += (x = std::exp(x - mx));
      double* o = out.data() + (i * c.heads + h) * c.dv;
      for (int64_t t = 0; t < visible; ++t) {
        const double* v = kv.data() + (t * c.heads + h) * kvw + c.dn;
        for (int64_t d = 0; d < c.dv; ++d) o[d] += s[t] / sum * v[d];
      }
      lse[h * c.queries + i] = mx + std::log(sum);
    }
}

class MlaPrefill : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (GetParam() == Isa::kAvx512 && !cpu_features().has_avx512_kernels())
      GTEST_SKIP() << "no AVX-512 BF16 on this CPU; the portable kernel is tested alone";
    set_active_isa(GetParam());
  }
  void TearDown() override { set_active_isa(cpu_features().has_avx512_kernels() ? Isa::kAvx512 : Isa::kPortable); }

  // Runs a case on head-range views of larger tensors (as the model passes them) and checks it.
  static void check(const Case& c, uint32_t seed) {
    SCOPED_TRACE(::testing::Message() << "queries " << c.queries << " keys " << c.keys << " heads " << c.heads
                                      << " dims " << c.dn << "+" << c.dr << "/" << c.dv << " causal " << c.causal);
    std::mt19937 rng(seed);
    const int64_t extra = 2;  // heads around the view, never to be read or written
    const Tensor q_all = random_tensor({c.queries, c.heads + extra, c.dn + c.dr}, c.q_dtype, rng, 1.0f);
    const Tensor kv_all = random_tensor({c.keys, c.heads + extra, c.dn + c.dv}, c.kv_dtype, rng, 0.5f);
    const Tensor k_rope = random_tensor({c.keys, c.dr}, c.kv_dtype, rng, 0.5f);
    Tensor out_all = Tensor::zeros(DType::kF32, {c.queries, c.heads + extra, c.dv});
    for (int64_t i = 0; i < out_all.numel(); ++i) out_all.mutable_data<float>()[i] = NAN;
    const Tensor q = q_all.slice(1, 1, 1 + c.heads), kv = kv_all.slice(1, 1, 1 + c.heads);
    Tensor out = out_all.slice(1, 1, 1 + c.heads);
    Tensor lse = Tensor::empty(DType::kF32, {c.heads, c.queries});
    const double scale = 1.0 / std::sqrt(static_cast<double>(c.dn + c.dr));
    mla_prefill(q, kv, k_rope, static_cast<float>(scale), c.causal, out, lse);

    std::vector<double> want, want_lse;
    reference(c, q, kv, k_rope, scale, want, want_lse);
    double max_err = 0;
    for (int64_t i = 0; i < c.queries; ++i)
      for (int64_t h = 0; h < c.heads + extra; ++h)
        for (int64_t d = 0; d < c.dv; ++d) {
          const float got = out_all.at<float>(i, h, d);
          if (h == 0 || h == c.heads + 1) {
            ASSERT_TRUE(std::isnan(got)) << "wrote outside the view at head " << h;
            continue;
          }
          ASSERT_FALSE(std::isnan(got)) << "NaN at query " << i << " head " << h - 1;
          max_err = std::max(max_err, std::fabs(got - want[((i * c.heads) + h - 1) * c.dv + d]));
        }
    EXPECT_LT(max_err, 2e-3);
    for (size_t i = 0; i < want_lse.size(); ++i) {
      if (std::isinf(want_lse[i]))
        EXPECT_TRUE(std::isinf(lse.data<float>()[i]) && lse.data<float>()[i] < 0) << "lse " << i;
      else
        EXPECT_NEAR(lse.data<float>()[i], want_lse[i], 1e-4 * std::max(1.0, std::fabs(want_lse[i]))) << "lse " << i;
    }
  }
};

TEST_P(MlaPrefill, WholePromptsOfEdgeLengths) {
  uint32_t seed = 1;
  // DeepSeek-V3's per-head dims (128 + 64 keys: 1.5 k-blocks, padded; 128 values) and the
  // tiny fixture's (64 + 32, 64).
  for (const auto& [dn, dr, dv] : {std::tuple{128, 64, 128}, std::tuple{64, 32, 64}})
    for (int64_t len : {1, 2, 63, 64, 95, 96, 97, 127, 128, 129, 300})
      check({len, len, 3, dn, dr, dv}, seed++);
}

TEST_P(MlaPrefill, QueriesAfterACachedPrefix) {
  // A prompt's tail after a prefix-cache hit or a previous chunk: queries sit at the last
  // positions and see the whole prefix.
  check({1, 700, 2, 128, 64, 128}, 11);
  check({37, 300, 4, 128, 64, 128}, 12);
  check({200, 1000, 2, 64, 32, 64}, 13);
}

TEST_P(MlaPrefill, NotCausalAndOtherDtypes) {
  check({50, 170, 3, 128, 64, 128, false}, 21);
  check({130, 130, 2, 128, 64, 128, true, DType::kBF16, DType::kF32}, 22);
  check({20, 20, 1, 40, 24, 16, true, DType::kBF16, DType::kBF16}, 23);  // one k-block, padded
}

TEST_P(MlaPrefill, ManyHeadsLongPrompt) { check({1100, 1100, 16, 128, 64, 128}, 31); }

INSTANTIATE_TEST_SUITE_P(Isas, MlaPrefill, ::testing::Values(Isa::kPortable, Isa::kAvx512),
                         [](const auto& param_info) { return std::string(isa_name(param_info.param)); });

TEST(MlaPrefillArguments, NoKeysGiveZerosAndMinusInfinity) {
  const Tensor q = Tensor::zeros(DType::kF32, {3, 2, 96});
  const Tensor kv = Tensor::zeros(DType::kBF16, {0, 2, 64 + 64});
  const Tensor k_rope = Tensor::zeros(DType::kBF16, {0, 32});
  Tensor out = Tensor::empty(DType::kF32, {3, 2, 64});
  Tensor lse = Tensor::empty(DType::kF32, {2, 3});
  mla_prefill(q, kv, k_rope, 0.1f, /*causal=*/false, out, lse);
  for (int64_t i = 0; i < out.numel(); ++i) EXPECT_EQ(out.data<float>()[i], 0.0f);
  for (int64_t i = 0; i < lse.numel(); ++i) EXPECT_TRUE(std::isinf(lse.data<float>()[i]) && lse.data<float>()[i] < 0);
}

void expect_invalid(const std::function<void()>& call, const std::string& needle) {
  try {
    call();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(MlaPrefillArguments, RejectsBadInputs) {
  const Tensor q = Tensor::zeros(DType::kF32, {4, 2, 96});
  const Tensor kv = Tensor::zeros(DType::kBF16, {4, 2, 128});
  const Tensor k_rope = Tensor::zeros(DType::kBF16, {4, 32});
  Tensor out = Tensor::empty(DType::kF32, {4, 2, 64});
  Tensor lse = Tensor::empty(DType::kF32, {2, 4});
  const Tensor few_keys = Tensor::zeros(DType::kBF16, {3, 2, 128});
  const Tensor few_rope = Tensor::zeros(DType::kBF16, {3, 32});
  expect_invalid([&] { mla_prefill(q, few_keys, few_rope, 1, true, out, lse); }, "needs them among the keys");
  expect_invalid([&] { mla_prefill(q, kv, few_rope, 1, true, out, lse); }, "k_rope");
  Tensor odd_out = Tensor::empty(DType::kF32, {4, 2, 60});
  expect_invalid([&] { mla_prefill(q, kv, k_rope, 1, true, odd_out, lse); }, "multiple of 16");
  const Tensor three_heads = Tensor::zeros(DType::kBF16, {4, 3, 128});
  expect_invalid([&] { mla_prefill(q, three_heads, k_rope, 1, true, out, lse); }, "kv must be");
  Tensor bad_lse = Tensor::empty(DType::kF32, {4, 2});
  expect_invalid([&] { mla_prefill(q, kv, k_rope, 1, true, out, bad_lse); }, "lse must be");
  const Tensor int_q = Tensor::zeros(DType::kI32, {4, 2, 96});
  expect_invalid([&] { mla_prefill(int_q, kv, k_rope, 1, true, out, lse); }, "q must be");
}

}  // namespace
}  // namespace cachalot::mla
