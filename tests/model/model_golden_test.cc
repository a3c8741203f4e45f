// The model against the tiny-dsv3 fixture's float64 reference (see ../shared/fixtures/README.md):
// exact mode to 1e-3 with identical routing and greedy tokens, by one prefill and by decoding
// token by token through the paged cache; fast mode by agreement statistics.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "core/isa.h"
#include "model/model.h"
#include "tests/model/golden.h"
#include "tests/support/test_support.h"

namespace cachalot::model {
namespace {

using testing::argmax;
using testing::GoldenCase;

constexpr int64_t kBlocks = 8;  // 512 tokens per sequence at most in these tests

// Block ids [first, first + kBlocks) for one sequence.
std::vector<int32_t> blocks_from(int32_t first) {
  std::vector<int32_t> b(kBlocks);
  std::iota(b.begin(), b.end(), first);
  return b;
}

// Greedy decoding of n tokens after a prefill whose last logits are `logits`, one token per step.
std::vector<int32_t> greedy_decode(const Model& m, KvCache& cache, const std::vector<int32_t>& table, int64_t pos,
                                   const float* logits, int n) {
  const int64_t vocab = m.config().vocab_size;
  std::vector<int32_t> out{argmax(logits, vocab)};
  while (static_cast<int>(out.size()) < n) {
    const int32_t token = out.back();
    const SequenceStep step{{&token, 1}, pos++, table};
    const ForwardOutput o = m.forward({&step, 1}, cache);
    out.push_back(argmax(o.logits.data<float>(), vocab));
  }
  return out;
}

double max_abs_diff(const float* got, const std::vector<double>& want) {
  double d = 0;
  for (size_t i = 0; i < want.size(); ++i) d = std::max(d, std::abs(got[i] - want[i]));
  return d;
}

TEST(ExactGolden, PrefillLogitsRoutingAndGreedyContinuation) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  const auto cases = testing::load_golden(dir);
  const auto model = Model::load(dir, {.precision = Precision::kExact});
  const int64_t vocab = model->config().vocab_size;
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const GoldenCase& g = cases[ci];
    SCOPED_TRACE(::testing::Message() << "case " << ci << " (prompt of " << g.prompt.size() << ")");
    KvCache cache = model->make_kv_cache(kBlocks);
    const std::vector<int32_t> table = blocks_from(0);
    const SequenceStep step{g.prompt, 0, table};
    const ForwardOutput out = model->forward({&step, 1}, cache, {.all_logits = true, .record_routing = true});
    ASSERT_EQ(out.logits.size(0), static_cast<int64_t>(g.prompt.size()));
    for (size_t p = 0; p < g.prompt.size(); ++p)
      ASSERT_LT(max_abs_diff(out.logits.data<float>() + p * vocab, g.prefill_logits[p]), 1e-3) << "position " << p;
    ASSERT_EQ(out.routing.size(), g.routing.size());
    size_t moe_index = 0;
    for (const auto& [layer, rows] : g.routing) EXPECT_EQ(out.routing[moe_index++], rows) << "layer " << layer;
    const float* last = out.logits.data<float>() + (g.prompt.size() - 1) * vocab;
    EXPECT_EQ(greedy_decode(*model, cache, table, static_cast<int64_t>(g.prompt.size()), last, 12), g.greedy);
  }
}

TEST(ExactGolden, TokenByTokenDecodingMatchesThePrefill) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  const auto cases = testing::load_golden(dir);
  const auto model = Model::load(dir, {.precision = Precision::kExact});
  const int64_t vocab = model->config().vocab_size;
  for (size_t ci : {size_t{1}, size_t{3}}) {  // 7 and 70 tokens: the latter crosses a KV block
    const GoldenCase& g = cases[ci];
    SCOPED_TRACE(::testing::Message() << "case " << ci);
    KvCache cache = model->make_kv_cache(2 * kBlocks);
    // Blocks in a scrambled order: nothing may depend on a sequence's blocks being contiguous.
    std::vector<int32_t> table = blocks_from(0);
    std::reverse(table.begin(), table.end());
    std::vector<float> last;
    for (size_t p = 0; p < g.prompt.size(); ++p) {
      const SequenceStep step{{&g.prompt[p], 1}, static_cast<int64_t>(p), table};
      const ForwardOutput out = model->forward({&step, 1}, cache, {.record_routing = true});
      ASSERT_LT(max_abs_diff(out.logits.data<float>(), g.prefill_logits[p]), 1e-3) << "position " << p;
      size_t moe_index = 0;
      for (const auto& [layer, rows] : g.routing) ASSERT_EQ(out.routing[moe_index++][0], rows[p]) << "layer " << layer;
      last.assign(out.logits.data<float>(), out.logits.data<float>() + vocab);
    }
    EXPECT_EQ(greedy_decode(*model, cache, table, static_cast<int64_t>(g.prompt.size()), last.data(), 12), g.greedy);
  }
}

TEST(ExactGolden, OneBatchOfAllPromptsAndChunkedPrefill) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  const auto cases = testing::load_golden(dir);
  const auto model = Model::load(dir, {.precision = Precision::kExact});
  const int64_t vocab = model->config().vocab_size;
  KvCache cache = model->make_kv_cache(kBlocks * static_cast<int64_t>(cases.size()));
  std::vector<std::vector<int32_t>> tables;
  std::vector<SequenceStep> steps;
  for (size_t i = 0; i < cases.size(); ++i) tables.push_back(blocks_from(static_cast<int32_t>(i * kBlocks)));
  // Sequences 0-2 prefill whole; sequence 3 (70 tokens) has its first 40 cached by an earlier
  // chunk, so this batch mixes a continuation with fresh prompts.
  const GoldenCase& long_case = cases[3];
  const std::span<const int32_t> prompt3(long_case.prompt);
  const SequenceStep first_chunk{prompt3.first(40), 0, tables[3]};
  model->forward({&first_chunk, 1}, cache);
  for (size_t i = 0; i < 3; ++i) steps.push_back({cases[i].prompt, 0, tables[i]});
  steps.push_back({prompt3.subspan(40), 40, tables[3]});
  const ForwardOutput out = model->forward(steps, cache, {.all_logits = true});
  int64_t row = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const size_t begin = i == 3 ? 40 : 0;
    for (size_t p = begin; p < cases[i].prompt.size(); ++p, ++row)
      ASSERT_LT(max_abs_diff(out.logits.data<float>() + row * vocab, cases[i].prefill_logits[p]), 1e-3)
          << "case " << i << " position " << p;
  }
}

// The production path: FP8 activations, BF16 between layers, the MLA kernel over a BF16 or FP8
// cache. Its routing flips on near-ties of random weights, so it is checked by statistics.
class FastGolden : public ::testing::TestWithParam<std::tuple<Isa, mla::KvFormat>> {
 protected:
  void SetUp() override {
    if (isa() == Isa::kAvx512 && !cpu_features().has_avx512_kernels()) GTEST_SKIP() << "no AVX-512 BF16 on this CPU";
    set_active_isa(isa());
  }
  void TearDown() override { set_active_isa(cpu_features().has_avx512_kernels() ? Isa::kAvx512 : Isa::kPortable); }
  Isa isa() const { return std::get<0>(GetParam()); }
  mla::KvFormat kv_format() const { return std::get<1>(GetParam()); }
};

TEST_P(FastGolden, AgreesWithTheReferenceStatistically) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  const auto cases = testing::load_golden(dir);
  const auto model = Model::load(dir, {.precision = Precision::kFast, .kv_format = kv_format()});
  const int64_t vocab = model->config().vocab_size;
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const GoldenCase& g = cases[ci];
    KvCache cache = model->make_kv_cache(kBlocks);
    const std::vector<int32_t> table = blocks_from(0);
    const SequenceStep step{g.prompt, 0, table};
    const ForwardOutput out = model->forward({&step, 1}, cache, {.all_logits = true});
    // Top-1 agreement over the prompt's positions; cosine of the prompt's logits as one vector.
    int agree = 0;
    std::vector<double> want;
    for (size_t p = 0; p < g.prompt.size(); ++p) {
      const float* l = out.logits.data<float>() + p * vocab;
      agree += argmax(l, vocab) == argmax(g.prefill_logits[p]);
      want.insert(want.end(), g.prefill_logits[p].begin(), g.prefill_logits[p].end());
    }
    const double agreement = double(agree) / g.prompt.size();
    const double cos = testing::cosine(out.logits.data<float>(), want);
    EXPECT_GE(agreement, 0.5) << "case " << ci;
    EXPECT_GE(cos, 0.97) << "case " << ci;
    std::printf("fast case %zu: top-1 agreement %.2f, cosine %.4f\n", ci, agreement, cos);
  }
}

// Decode steps attend in the absorbed form; so does this prefill (by default a prompt attends
// expanded, attention_forms_test.cc compares the forms layer by layer).
TEST_P(FastGolden, DecodingTokenByTokenAgreesWithThePrefill) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  const GoldenCase g = testing::load_golden(dir)[3];
  const auto model = Model::load(
      dir, {.precision = Precision::kFast, .kv_format = kv_format(), .attention_form = AttentionForm::kAbsorbed});
  const int64_t vocab = model->config().vocab_size;
  const std::vector<int32_t> table = blocks_from(0);
  KvCache prefill_cache = model->make_kv_cache(kBlocks), decode_cache = model->make_kv_cache(kBlocks);
  const SequenceStep whole{g.prompt, 0, table};
  const ForwardOutput prefill = model->forward({&whole, 1}, prefill_cache, {.all_logits = true});
  for (size_t p = 0; p < g.prompt.size(); ++p) {
    const SequenceStep step{{&g.prompt[p], 1}, static_cast<int64_t>(p), table};
    const ForwardOutput out = model->forward({&step, 1}, decode_cache);
    std::vector<double> want(prefill.logits.data<float>() + p * vocab, prefill.logits.data<float>() + (p + 1) * vocab);
    ASSERT_GT(testing::cosine(out.logits.data<float>(), want), 0.999) << "position " << p;
  }
}

INSTANTIATE_TEST_SUITE_P(IsasAndCaches, FastGolden,
                         ::testing::Combine(::testing::Values(Isa::kPortable, Isa::kAvx512),
                                            ::testing::Values(mla::KvFormat::kBf16, mla::KvFormat::kFp8)),
                         [](const auto& info) {
                           return std::string(isa_name(std::get<0>(info.param))) +
                                  (std::get<1>(info.param) == mla::KvFormat::kBf16 ? "_bf16" : "_fp8");
                         });

}  // namespace
}  // namespace cachalot::model
