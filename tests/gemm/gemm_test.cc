#include "gemm/gemm.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstring>

#include "core/error.h"
#include "core/isa.h"
#include "tests/gemm/gemm_reference.h"

namespace cachalot::gemm {
namespace {

using testing::calc_diff;
using testing::double_reference;
using testing::random_f32;
using testing::relative_norm_error;
using testing::same_order_reference;

struct Operands {
  Tensor a_f32, b_f32;  // unquantized
  Fp8Tensor a, b;       // quantized
};

Operands make_operands(int64_t m, int64_t n, int64_t k, uint32_t seed) {
  Operands o{random_f32(m, k, seed), random_f32(n, k, seed + 1000), {}, {}};
  o.a = quantize_activations(o.a_f32);
  o.b = quantize_weights(o.b_f32);
  return o;
}

class GemmIsaTest : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (GetParam() == Isa::kAvx512 && !cpu_features().has_avx512_kernels())
      GTEST_SKIP() << "no AVX-512 BF16 on this CPU; the portable kernel is tested alone";
    set_active_isa(GetParam());
  }
  void TearDown() override {
    set_active_isa(cpu_features().has_avx512_kernels() ? Isa::kAvx512 : Isa::kPortable);
  }
};

// Every shape family: the kernel equals the scalar same-order reference bit for bit, and the
// float64 product of the same FP8 values to FP32 accuracy. The shapes run one after another on
// the same per-thread scratch, which is not zeroed (Tile::store_first): a first k-block that
// added into it instead of storing would show here.
TEST_P(GemmIsaTest, Fp8MatchesTheSameOrderReferenceExactly) {
  const int64_t shapes[][3] = {{1, 16, 128},  {1, 17, 200},  {2, 100, 64},  {3, 160, 384}, {4, 257, 130},
                               {5, 64, 256},  {7, 33, 129},  {16, 96, 300}, {47, 80, 128}, {49, 129, 257},
                               {100, 48, 512}, {130, 200, 200}};
  uint32_t seed = 1;
  for (const auto& s : shapes) {
    const int64_t m = s[0], n = s[1], k = s[2];
    SCOPED_TRACE(::testing::Message() << "m=" << m << " n=" << n << " k=" << k);
    const Operands o = make_operands(m, n, k, seed++);
    Tensor d = Tensor::empty(DType::kF32, {m, n});
    gemm_fp8_nt(o.a.data, o.a.scales, o.b.data, o.b.scales, d);
    const std::vector<float> want = same_order_reference(o.a.data, o.a.scales, o.b.data, o.b.scales);
    for (int64_t i = 0; i < m * n; ++i)
      ASSERT_EQ(std::bit_cast<uint32_t>(d.data<float>()[i]), std::bit_cast<uint32_t>(want[i]))
          << "element " << i << ": " << d.data<float>()[i] << " vs " << want[i];
    const std::vector<double> exact =
        double_reference(dequantize_activations(o.a.data, o.a.scales), dequantize_weights(o.b.data, o.b.scales));
    EXPECT_LT(relative_norm_error(d.data<float>(), exact, exact.size()), 1e-5);
    // BF16 output: the same values rounded once (full chunks are rounded inside the kernel,
    // partial ones after it).
    Tensor d16 = Tensor::empty(DType::kBF16, {m, n});
    gemm_fp8_nt(o.a.data, o.a.scales, o.b.data, o.b.scales, d16);
    for (int64_t i = 0; i < m * n; ++i)
      ASSERT_EQ(d16.data<bf16>()[i].bits, float_to_bf16(want[i]).bits) << "BF16 element " << i;
  }
}

// K = 0 gives zeros (plus C), also after a call that left other values in the scratch block.
TEST_P(GemmIsaTest, EmptyKGivesZerosOrC) {
  const Operands full = make_operands(3, 16, 128, 7);
  Tensor d = Tensor::empty(DType::kF32, {3, 16});
  gemm_fp8_nt(full.a.data, full.a.scales, full.b.data, full.b.scales, d);
  const Operands empty = make_operands(3, 16, 0, 8);
  gemm_fp8_nt(empty.a.data, empty.a.scales, empty.b.data, empty.b.scales, d);
  for (int64_t i = 0; i < d.numel(); ++i) ASSERT_EQ(d.data<float>()[i], 0.0f) << i;
  Tensor c = random_f32(3, 16, 9);
  gemm_fp8_nt(empty.a.data, empty.a.scales, empty.b.data, empty.b.scales, d, &c);
  for (int64_t i = 0; i < d.numel(); ++i) ASSERT_EQ(d.data<float>()[i], c.data<float>()[i]) << i;
}

TEST_P(GemmIsaTest, Fp8AgainstTheUnquantizedProductAndBf16Output) {
  for (int64_t m : {1, 16, 64, 129}) {
    const Operands o = make_operands(m, 256, 1024, 77 + static_cast<uint32_t>(m));
    const std::vector<double> exact = double_reference(o.a_f32, o.b_f32);
    Tensor d = Tensor::empty(DType::kBF16, {m, 256});
    gemm_fp8_nt(o.a.data, o.a.scales, o.b.data, o.b.scales, d);
    std::vector<float> got(static_cast<size_t>(m * 256));
    convert(d.data<bf16>(), got.data(), got.size());
    // DeepGEMM's bar for FP8 (quantization error included; about 7e-4 is typical there).
    EXPECT_LT(calc_diff(got, exact, got.size()), 1e-3) << "m=" << m;
  }
}

TEST_P(GemmIsaTest, AccumulatesIntoCAndMayAliasIt) {
  const Operands o = make_operands(9, 40, 256, 5);
  Tensor c = random_f32(9, 40, 6);
  Tensor d = Tensor::empty(DType::kF32, {9, 40});
  gemm_fp8_nt(o.a.data, o.a.scales, o.b.data, o.b.scales, d, &c);
  const std::vector<float> ab = same_order_reference(o.a.data, o.a.scales, o.b.data, o.b.scales);
  for (int64_t i = 0; i < 9 * 40; ++i) ASSERT_EQ(d.data<float>()[i], ab[i] + c.data<float>()[i]);
  Tensor alias = c.clone();
  gemm_fp8_nt(o.a.data, o.a.scales, o.b.data, o.b.scales, alias, &alias);
  for (int64_t i = 0; i < 9 * 40; ++i) ASSERT_EQ(alias.data<float>()[i], d.data<float>()[i]);
}

TEST_P(GemmIsaTest, LargeM) {
  const Operands o = make_operands(4096, 32, 256, 9);
  Tensor d = Tensor::empty(DType::kF32, {4096, 32});
  gemm_fp8_nt(o.a.data, o.a.scales, o.b.data, o.b.scales, d);
  const std::vector<float> want = same_order_reference(o.a.data, o.a.scales, o.b.data, o.b.scales);
  EXPECT_EQ(0, std::memcmp(d.data<float>(), want.data(), want.size() * sizeof(float)));
}

TEST_P(GemmIsaTest, GroupedContiguousFollowsEachRowsExpert) {
  const int64_t groups = 3, n = 48, k = 256;
  const int32_t idx[] = {0, 0, 0, 2, 2, -1, -1, 1, 0, 2, 2, 2, 2, 2, 2, 2, 2, -1};
  const int64_t m = std::size(idx);
  const Tensor a_f32 = random_f32(m, k, 11);
  const Fp8Tensor a = quantize_activations(a_f32);
  std::vector<Fp8Tensor> experts;
  Tensor b_all = Tensor::empty(DType::kF8E4M3, {groups, n, k});
  Tensor sb_all = Tensor::empty(DType::kF32, {groups, 1, 2});
  for (int64_t g = 0; g < groups; ++g) {
    experts.push_back(quantize_weights(random_f32(n, k, 20 + static_cast<uint32_t>(g))));
    std::memcpy(b_all.mutable_data<fp8_e4m3>() + g * n * k, experts[g].data.raw_data(), n * k);
    std::memcpy(sb_all.mutable_data<float>() + g * 2, experts[g].scales.raw_data(), 2 * sizeof(float));
  }
  const PackedWeights packed = pack_fp8_weights(b_all, sb_all);
  Tensor m_indices = Tensor::empty(DType::kI32, {m});
  std::memcpy(m_indices.mutable_data<int32_t>(), idx, sizeof(idx));
  Tensor d = Tensor::empty(DType::kF32, {m, n});
  std::fill_n(d.mutable_data<float>(), m * n, -7.0f);
  gemm_fp8_grouped_contiguous(a.data, a.scales, packed, m_indices, d);
  // Packing the experts from separate tensors gives the same layout as packing them stacked.
  std::vector<Tensor> expert_b, expert_s;
  for (const Fp8Tensor& e : experts) expert_b.push_back(e.data), expert_s.push_back(e.scales);
  Tensor d_list = d.clone();
  gemm_fp8_grouped_contiguous(a.data, a.scales, pack_fp8_weights(expert_b, expert_s), m_indices, d_list);
  ASSERT_EQ(std::memcmp(d.raw_data(), d_list.raw_data(), d.nbytes()), 0);
  for (int64_t r = 0; r < m; ++r) {
    if (idx[r] < 0) {
      for (int64_t c = 0; c < n; ++c) ASSERT_EQ(d.at<float>(r, c), -7.0f) << "padding row " << r << " was written";
      continue;
    }
    const Tensor row = a.data.slice(0, r, r + 1), row_scales = a.scales.slice(0, r, r + 1);
    const auto want = same_order_reference(row, row_scales, experts[idx[r]].data, experts[idx[r]].scales);
    for (int64_t c = 0; c < n; ++c) ASSERT_EQ(d.at<float>(r, c), want[c]) << "row " << r << " col " << c;
  }
}

TEST_P(GemmIsaTest, GroupedMaskedComputesOnlyValidRows) {
  const int64_t groups = 4, m_max = 8, n = 20, k = 130;
  const int32_t counts[] = {0, 8, 3, 1};
  Tensor a = Tensor::empty(DType::kF8E4M3, {groups, m_max, k});
  Tensor sa = Tensor::empty(DType::kF32, {groups, m_max, 2});
  Tensor b = Tensor::empty(DType::kF8E4M3, {groups, n, k});
  Tensor sb = Tensor::empty(DType::kF32, {groups, 1, 2});
  std::vector<Fp8Tensor> as, bs;
  for (int64_t g = 0; g < groups; ++g) {
    as.push_back(quantize_activations(random_f32(m_max, k, 40 + static_cast<uint32_t>(g))));
    bs.push_back(quantize_weights(random_f32(n, k, 50 + static_cast<uint32_t>(g))));
    std::memcpy(a.mutable_data<fp8_e4m3>() + g * m_max * k, as[g].data.raw_data(), m_max * k);
    std::memcpy(sa.mutable_data<float>() + g * m_max * 2, as[g].scales.raw_data(), m_max * 2 * sizeof(float));
    std::memcpy(b.mutable_data<fp8_e4m3>() + g * n * k, bs[g].data.raw_data(), n * k);
    std::memcpy(sb.mutable_data<float>() + g * 2, bs[g].scales.raw_data(), 2 * sizeof(float));
  }
  Tensor masked = Tensor::empty(DType::kI32, {groups});
  std::memcpy(masked.mutable_data<int32_t>(), counts, sizeof(counts));
  Tensor d = Tensor::empty(DType::kBF16, {groups, m_max, n});
  std::fill_n(d.mutable_data<bf16>(), groups * m_max * n, float_to_bf16(-3.0f));
  gemm_fp8_grouped_masked(a, sa, pack_fp8_weights(b, sb), masked, d);
  for (int64_t g = 0; g < groups; ++g) {
    const auto want = same_order_reference(as[g].data, as[g].scales, bs[g].data, bs[g].scales);
    for (int64_t r = 0; r < m_max; ++r)
      for (int64_t c = 0; c < n; ++c) {
        const float got = bf16_to_float(d.at<bf16>(g, r, c));
        if (r >= counts[g])
          ASSERT_EQ(got, -3.0f) << "masked row g=" << g << " r=" << r << " was written";
        else
          ASSERT_EQ(d.at<bf16>(g, r, c).bits, float_to_bf16(want[r * n + c]).bits);
      }
  }
}

TEST_P(GemmIsaTest, Bf16GemmAgainstDouble) {
  for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 33, 100}, {6, 64, 256}, {70, 129, 384}}) {
    const Tensor a32 = random_f32(m, k, 60), b32 = random_f32(n, k, 61);
    Tensor a = Tensor::empty(DType::kBF16, {m, k}), b = Tensor::empty(DType::kBF16, {n, k});
    convert(a32.data<float>(), a.mutable_data<bf16>(), m * k);
    convert(b32.data<float>(), b.mutable_data<bf16>(), n * k);
    Tensor a_back = Tensor::empty(DType::kF32, {m, k}), b_back = Tensor::empty(DType::kF32, {n, k});
    convert(a.data<bf16>(), a_back.mutable_data<float>(), m * k);
    convert(b.data<bf16>(), b_back.mutable_data<float>(), n * k);
    const std::vector<double> exact = double_reference(a_back, b_back);
    Tensor d = Tensor::empty(DType::kF32, {m, n});
    gemm_bf16_nt(a, b, d);
    EXPECT_LT(relative_norm_error(d.data<float>(), exact, exact.size()), 1e-5) << m << "x" << n << "x" << k;
    EXPECT_LT(calc_diff(d.data<float>(), exact, exact.size()), 1e-5);
  }
}

TEST_P(GemmIsaTest, Bf16GroupedMaskedMatchesPerGroupGemms) {
  const int64_t groups = 3, m_max = 5, n = 40, k = 200;
  const int32_t counts[] = {5, 0, 2};
  Tensor a = Tensor::empty(DType::kBF16, {groups, m_max, k}), b = Tensor::empty(DType::kBF16, {groups, n, k});
  convert(random_f32(groups * m_max, k, 70).data<float>(), a.mutable_data<bf16>(), groups * m_max * k);
  convert(random_f32(groups * n, k, 71).data<float>(), b.mutable_data<bf16>(), groups * n * k);
  Tensor masked = Tensor::empty(DType::kI32, {groups});
  std::memcpy(masked.mutable_data<int32_t>(), counts, sizeof(counts));
  Tensor d = Tensor::empty(DType::kF32, {groups, m_max, n});
  std::fill_n(d.mutable_data<float>(), d.numel(), -5.0f);
  gemm_bf16_grouped_masked(a, pack_bf16_weights(b), masked, d);
  for (int64_t g = 0; g < groups; ++g) {
    Tensor want = Tensor::empty(DType::kF32, {m_max, n});
    gemm_bf16_nt(a.select(0, g).clone(), b.select(0, g).clone(), want);
    for (int64_t r = 0; r < m_max; ++r)
      for (int64_t c = 0; c < n; ++c)
        ASSERT_EQ(d.at<float>(g, r, c), r < counts[g] ? want.at<float>(r, c) : -5.0f) << g << " " << r << " " << c;
  }
}

TEST_P(GemmIsaTest, RowRangeOfPackedWeightsGivesThoseColumns) {
  // A packing's output rows [n0, n1) as a view: the same values as those columns of the whole
  // product (FP8 with its scale blocks, and BF16), ending mid-way or at a ragged N.
  const int64_t m = 7, n = 300, k = 200;
  const Operands o = make_operands(m, n, k, 80);
  const PackedWeights fp8 = pack_fp8_weights(o.b.data, o.b.scales);
  Tensor b16 = Tensor::empty(DType::kBF16, {n, k}), a16 = Tensor::empty(DType::kBF16, {m, k});
  convert(o.b_f32.data<float>(), b16.mutable_data<bf16>(), n * k);
  convert(o.a_f32.data<float>(), a16.mutable_data<bf16>(), m * k);
  const PackedWeights bf = pack_bf16_weights(b16);
  Tensor whole8 = Tensor::empty(DType::kF32, {m, n}), whole16 = Tensor::empty(DType::kF32, {m, n});
  gemm_fp8_nt(o.a.data, o.a.scales, fp8, whole8);
  gemm_bf16_nt(a16, bf, whole16);
  for (auto [n0, n1] : {std::pair<int64_t, int64_t>{0, 128}, {128, 256}, {128, 300}, {256, 300}, {0, 64}}) {
    Tensor part8 = Tensor::empty(DType::kF32, {m, n1 - n0}), part16 = Tensor::empty(DType::kF32, {m, n1 - n0});
    gemm_fp8_nt(o.a.data, o.a.scales, fp8.rows(n0, n1), part8);
    gemm_bf16_nt(a16, bf.rows(n0, n1), part16);
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < n1 - n0; ++c) {
        ASSERT_EQ(part8.at<float>(r, c), whole8.at<float>(r, n0 + c)) << n0 << ".." << n1 << " " << r << " " << c;
        ASSERT_EQ(part16.at<float>(r, c), whole16.at<float>(r, n0 + c)) << n0 << ".." << n1 << " " << r << " " << c;
      }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, GemmIsaTest, ::testing::Values(Isa::kPortable, Isa::kAvx512),
                         [](const auto& param_info) { return std::string(isa_name(param_info.param)); });

// Expects an invalid-argument error whose message contains `needle`.
template <typename Fn>
void expect_invalid(Fn fn, const std::string& needle) {
  try {
    fn();
    FAIL() << "expected an error mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(GemmArguments, AreCheckedWithClearErrors) {
  const Operands o = make_operands(4, 32, 256, 70);
  const PackedWeights packed = pack_fp8_weights(o.b.data, o.b.scales);
  Tensor d = Tensor::empty(DType::kF32, {4, 32});
  const Operands other = make_operands(4, 32, 128, 71);
  expect_invalid([&] { gemm_fp8_nt(other.a.data, other.a.scales, packed, d); }, "a has K = 128 but b has K = 256");
  expect_invalid([&] { gemm_fp8_nt(o.a.data, Tensor::zeros(DType::kF32, {4, 3}), packed, d); }, "sa must be");
  Tensor wrong_d = Tensor::empty(DType::kF32, {4, 31});
  expect_invalid([&] { gemm_fp8_nt(o.a.data, o.a.scales, packed, wrong_d); }, "d must be [4, 32]");
  Tensor int_d = Tensor::empty(DType::kI32, {4, 32});
  expect_invalid([&] { gemm_fp8_nt(o.a.data, o.a.scales, packed, int_d); }, "d must be F32 or BF16");
  const Tensor bad_c = Tensor::zeros(DType::kBF16, {4, 32});
  expect_invalid([&] { gemm_fp8_nt(o.a.data, o.a.scales, packed, d, &bad_c); }, "c must be F32");
  expect_invalid([&] { gemm_fp8_nt(o.a_f32, o.a.scales, packed, d); }, "a must be F8_E4M3");
  expect_invalid([&] { pack_fp8_weights(o.b.data, Tensor::zeros(DType::kF32, {1, 1})); }, "scales must be");

  Tensor idx = Tensor::zeros(DType::kI32, {4});
  idx.mutable_at<int32_t>(2) = 5;
  expect_invalid([&] { gemm_fp8_grouped_contiguous(o.a.data, o.a.scales, packed, idx, d); }, "m_indices[2] = 5");
  expect_invalid([&] { gemm_fp8_grouped_contiguous(o.a.data, o.a.scales, packed, Tensor(), d); }, "m_indices must be");

  const Tensor a3 = o.a.data.reshape({1, 4, 256}), sa3 = o.a.scales.reshape({1, 4, 2});
  Tensor d3 = Tensor::empty(DType::kF32, {1, 4, 32});
  expect_invalid([&] { gemm_fp8_grouped_masked(a3, sa3, packed, Tensor(), d3); }, "masked_m must be");
  Tensor counts = Tensor::zeros(DType::kI32, {1});
  counts.mutable_at<int32_t>(0) = 5;
  expect_invalid([&] { gemm_fp8_grouped_masked(a3, sa3, packed, counts, d3); }, "masked_m[0] = 5");

  const PackedWeights bf = pack_bf16_weights(Tensor::zeros(DType::kBF16, {32, 256}));
  expect_invalid([&] { gemm_fp8_nt(o.a.data, o.a.scales, bf, d); }, "packed FP8");
  expect_invalid([&] { gemm_bf16_nt(Tensor::zeros(DType::kBF16, {4, 255}), bf, d); }, "K = 255");
  expect_invalid([&] { (void)bf.rows(16, 32); }, "must start at a multiple of 128");
  expect_invalid([&] { (void)pack_bf16_weights(Tensor::zeros(DType::kBF16, {300, 256})).rows(128, 200); }, "end at a multiple of 64");
  expect_invalid([&] { (void)bf.rows(0, 33); }, "not a range inside");
}

}  // namespace
}  // namespace cachalot::gemm
