// The expert-parallel forward (ranks as threads) against the single-rank model on the tiny-dsv3
// fixture: exact mode gives the same logits (1e-4), routing and greedy tokens with 2 and 4 ranks,
// with and without the two-micro-batch overlap; fast mode agrees statistically.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "ep/launch.h"
#include "model/expert_parallel.h"
#include "model/model.h"
#include "tests/model/golden.h"
#include "tests/support/test_support.h"

namespace cachalot::model {
namespace {

using testing::argmax;

constexpr int64_t kBlocks = 8;

struct BatchRun {
  ForwardOutput prefill;
  std::vector<std::vector<int32_t>> greedy;  // per sequence
  std::vector<std::vector<float>> margins;   // per greedy token: its logit minus the runner-up's
};

float top_margin(const float* logits, int64_t vocab) {
  float first = -INFINITY, second = -INFINITY;
  for (int64_t i = 0; i < vocab; ++i) {
    if (logits[i] > first) {
      second = first;
      first = logits[i];
    } else if (logits[i] > second) {
      second = logits[i];
    }
  }
  return first - second;
}

// All prompts in one prefill batch, then `decode` greedy steps with every sequence in each batch.
BatchRun run_batch(const Model& m, const std::vector<std::vector<int32_t>>& prompts, int decode) {
  const int64_t vocab = m.config().vocab_size, n = static_cast<int64_t>(prompts.size());
  KvCache cache = m.make_kv_cache(kBlocks * n);
  std::vector<std::vector<int32_t>> tables(prompts.size(), std::vector<int32_t>(kBlocks));
  for (int64_t i = 0; i < n; ++i) std::iota(tables[i].begin(), tables[i].end(), static_cast<int32_t>(i * kBlocks));
  std::vector<SequenceStep> steps;
  for (int64_t i = 0; i < n; ++i) steps.push_back({prompts[i], 0, tables[i]});
  BatchRun r;
  r.prefill = m.forward(steps, cache, {.all_logits = true, .record_routing = true});
  r.greedy.resize(prompts.size());
  r.margins.resize(prompts.size());
  std::vector<int32_t> next(prompts.size());
  int64_t row = 0;
  for (int64_t i = 0; i < n; ++i) {
    row += static_cast<int64_t>(prompts[i].size());
    next[i] = argmax(r.prefill.logits.data<float>() + (row - 1) * vocab, vocab);
    r.greedy[i].push_back(next[i]);
    r.margins[i].push_back(top_margin(r.prefill.logits.data<float>() + (row - 1) * vocab, vocab));
  }
  for (int step = 1; step < decode; ++step) {
    steps.clear();
    for (int64_t i = 0; i < n; ++i)
      steps.push_back({{&next[i], 1}, static_cast<int64_t>(prompts[i].size()) + step - 1, tables[i]});
    const ForwardOutput o = m.forward(steps, cache);
    for (int64_t i = 0; i < n; ++i) {
      next[i] = argmax(o.logits.data<float>() + i * vocab, vocab);
      r.greedy[i].push_back(next[i]);
      r.margins[i].push_back(top_margin(o.logits.data<float>() + i * vocab, vocab));
    }
  }
  return r;
}

// Exact mode: the same prefill logits (1e-4), routing and greedy tokens.
void expect_same_as_one_rank(const BatchRun& got, const BatchRun& want) {
  ASSERT_EQ(got.prefill.logits.shape(), want.prefill.logits.shape());
  double worst = 0;
  for (int64_t i = 0; i < want.prefill.logits.numel(); ++i)
    worst = std::max(worst, static_cast<double>(std::fabs(got.prefill.logits.data<float>()[i] - want.prefill.logits.data<float>()[i])));
  EXPECT_LT(worst, 1e-4);
  EXPECT_EQ(got.prefill.routing, want.prefill.routing);
  EXPECT_EQ(got.greedy, want.greedy);
}

std::vector<std::vector<int32_t>> golden_prompts(const std::string& dir) {
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& g : testing::load_golden(dir)) prompts.push_back(g.prompt);
  return prompts;
}

// EPLB's placement of skewed loads with one redundant slot per rank (hot experts replicated).
eplb::Placement skewed_placement(const Model& m, int ranks) {
  const ModelConfig& c = m.config();
  int64_t moe_layers = 0;
  for (const auto& l : m.weights().layers) moe_layers += l.is_moe;
  std::vector<float> loads(static_cast<size_t>(moe_layers * c.n_routed_experts));
  for (size_t i = 0; i < loads.size(); ++i) loads[i] = static_cast<float>(1000 / (1 + (i * 7) % c.n_routed_experts));
  return eplb::rebalance_experts(loads, moe_layers, c.n_routed_experts, c.n_routed_experts + ranks, c.n_group, 1, ranks);
}

// Runs batches until the model uses placement `version` (the ranks switch once all are ready).
void run_until_placement(const Model& m, const std::vector<std::vector<int32_t>>& prompts, int64_t version) {
  for (int i = 0; i < 200 && m.expert_placement_version() < version; ++i) run_batch(m, {prompts[0]}, 1);
  if (m.expert_placement_version() != version) throw Error(ErrorKind::kInternal, "placement never switched");
}

class ExactExpertParallel : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(ExactExpertParallel, SameLogitsRoutingAndTokensAsOneRank) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  const auto [ranks, overlap] = GetParam();
  auto prompts = golden_prompts(dir);
  // A prompt longer than one dispatch chunk (256 rows per rank and micro-batch).
  std::vector<int32_t> long_prompt;
  for (int i = 0; i < 300; ++i) long_prompt.push_back(prompts[i % prompts.size()][i % prompts[i % prompts.size()].size()]);
  prompts.push_back(long_prompt);
  const auto single = Model::load(dir, {.precision = Precision::kExact});
  const auto ep = Model::load(dir, {.precision = Precision::kExact, .ep_ranks = ranks, .ep_overlap = overlap});
  const BatchRun want = run_batch(*single, prompts, 6), got = run_batch(*ep, prompts, 6);
  expect_same_as_one_rank(got, want);
  // And the fixture's float64 reference for the golden prompts.
  const auto golden = testing::load_golden(dir);
  for (size_t i = 0; i < golden.size(); ++i)
    EXPECT_EQ(std::vector<int32_t>(golden[i].greedy.begin(), golden[i].greedy.begin() + 6), got.greedy[i]) << "case " << i;
}

INSTANTIATE_TEST_SUITE_P(RanksAndOverlap, ExactExpertParallel,
                         ::testing::Combine(::testing::Values(2, 4), ::testing::Values(false, true)));

// Decode steps go through low-latency mode by default; normal mode gives the same tokens.
TEST(ExpertParallel, DecodeThroughNormalModeMatchesLowLatency) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  const auto prompts = golden_prompts(dir);
  const auto ll = Model::load(dir, {.precision = Precision::kExact, .ep_ranks = 4});
  const auto normal = Model::load(dir, {.precision = Precision::kExact, .ep_ranks = 4, .ep_low_latency_decode = false});
  EXPECT_EQ(run_batch(*ll, prompts, 6).greedy, run_batch(*normal, prompts, 6).greedy);
}

TEST(ExpertParallel, FewerSequencesThanRanks) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  const auto prompts = golden_prompts(dir);
  const auto single = Model::load(dir, {.precision = Precision::kExact});
  const auto ep = Model::load(dir, {.precision = Precision::kExact, .ep_ranks = 4});
  const std::vector<std::vector<int32_t>> one = {prompts[0]};
  EXPECT_EQ(run_batch(*ep, one, 4).greedy, run_batch(*single, one, 4).greedy);
}

// Fast mode rounds each rank's partial expert sum to BF16 before combine (as DeepSeek does), and
// routing flips on the random weights' near-ties, so it is held to the statistics the
// single-rank fast path meets against the reference (model_golden_test.cc), and close to it.
TEST(ExpertParallel, FastModeAgreesWithTheReferenceAndOneRank) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  const auto golden = testing::load_golden(dir);
  const auto prompts = golden_prompts(dir);
  const auto single = Model::load(dir, {.precision = Precision::kFast});
  const auto ep = Model::load(dir, {.precision = Precision::kFast, .ep_ranks = 4});
  const BatchRun want = run_batch(*single, prompts, 8), got = run_batch(*ep, prompts, 8);
  const int64_t vocab = single->config().vocab_size;
  int64_t row = 0, agree_single = 0;
  for (size_t c = 0; c < golden.size(); ++c) {
    const int64_t n = static_cast<int64_t>(golden[c].prompt.size());
    int agree_ref = 0;
    std::vector<double> ref, one;
    for (int64_t p = 0; p < n; ++p) {
      const float* l = got.prefill.logits.data<float>() + (row + p) * vocab;
      const float* s = want.prefill.logits.data<float>() + (row + p) * vocab;
      agree_ref += argmax(l, vocab) == argmax(golden[c].prefill_logits[p]);
      agree_single += argmax(l, vocab) == argmax(s, vocab);
      ref.insert(ref.end(), golden[c].prefill_logits[p].begin(), golden[c].prefill_logits[p].end());
      one.insert(one.end(), s, s + vocab);
    }
    const float* mine = got.prefill.logits.data<float>() + row * vocab;
    EXPECT_GE(double(agree_ref) / n, 0.5) << "case " << c;
    EXPECT_GE(testing::cosine(mine, ref), 0.97) << "case " << c;
    EXPECT_GE(testing::cosine(mine, one), 0.97) << "case " << c;
    row += n;
  }
  EXPECT_GE(double(agree_single) / row, 0.85);
  // Greedy decoding (low-latency mode with FP8 dispatch and the masked FP8 GEMMs) gives the
  // single-rank fast path's tokens up to its first near-tie (a margin under 0.1, which the
  // ranks' BF16 partial sums may flip); after it the sequences may part.
  int64_t compared = 0;
  for (size_t i = 0; i < want.greedy.size(); ++i)
    for (size_t j = 0; j < want.greedy[i].size(); ++j) {
      EXPECT_EQ(got.greedy[i][j], want.greedy[i][j]) << "sequence " << i << " token " << j;
      ++compared;
      if (want.margins[i][j] < 0.1f || got.greedy[i][j] != want.greedy[i][j]) break;
    }
  EXPECT_GE(compared, 8);
}

// Ranks as processes over shared memory: rank 0 drives the same batch, the others follow, each
// attending for the sequences whose KV blocks its process holds.
TEST(ExpertParallel, ProcessesOverShmMatchOneRank) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  const auto prompts = golden_prompts(dir);
  const auto expected = run_batch(*Model::load(dir, {.precision = Precision::kExact}), prompts, 4).greedy;
  // (ranks, ranks per node): 4 ranks as 2 nodes of 2 take the internode dispatch/combine.
  for (const auto [ranks, per_node] : {std::pair{2, 0}, std::pair{4, 0}, std::pair{4, 2}}) {
    ep::TransportOptions o = expert_parallel_transport_options(load_config(dir), ranks, per_node ? ranks / per_node : 1);
    o.ranks_per_node = per_node;
    o.timeout = std::chrono::seconds(60);
    const std::vector<int> status = ep::run_shm_ranks(ranks, o, [&](ep::Transport& t) {
      const std::shared_ptr<ep::Transport> borrowed(&t, [](ep::Transport*) {});
      const auto m = Model::load(dir, {.precision = Precision::kExact, .ep_transport = borrowed, .ep_overlap = true});
      if (t.rank() != 0) return m->follow();
      // run_batch puts each sequence's blocks in its own range of ids, so the ranks share the
      // sequences (each process holds one range): the decode steps read KV the owner wrote.
      if (run_batch(*m, prompts, 4).greedy != expected) throw Error(ErrorKind::kInternal, "greedy tokens differ");
      // A sequence whose blocks lie in two ranks' ranges is refused, and the group goes on.
      KvCache cache = m->make_kv_cache(2 * ranks);
      const std::vector<int32_t> spanning = {0, 2}, tokens(70, 5);
      const SequenceStep bad{tokens, 0, spanning};
      try {
        m->forward({&bad, 1}, cache);
        throw Error(ErrorKind::kInternal, "blocks in two ranges accepted");
      } catch (const Error& e) {
        if (std::string(e.what()).find("different attention ranks' ranges") == std::string::npos) throw;
      }
      if (run_batch(*m, prompts, 2).greedy[0] != std::vector<int32_t>(expected[0].begin(), expected[0].begin() + 2))
        throw Error(ErrorKind::kInternal, "the group did not recover");
      // A rebalanced placement reaches the other processes with the plans; outputs stay exact.
      m->set_expert_placement(skewed_placement(*m, ranks));
      run_until_placement(*m, prompts, 1);
      if (run_batch(*m, prompts, 4).greedy != expected) throw Error(ErrorKind::kInternal, "greedy tokens differ after EPLB");
    });
    for (int r = 0; r < ranks; ++r)
      EXPECT_EQ(ep::describe_exit_status(status[r]), "exited 0") << ranks << " ranks (" << per_node << " per node), rank " << r;
  }
}

// With 4 redundant slots (20 slots, 5 per rank): once every rank has switched, exact mode still
// gives the single rank's logits and tokens.
TEST(ExpertParallel, ARebalancedPlacementKeepsExactOutputs) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  const auto prompts = golden_prompts(dir);
  const auto single = Model::load(dir, {.precision = Precision::kExact});
  const auto ep = Model::load(dir, {.precision = Precision::kExact, .ep_ranks = 4});
  const BatchRun want = run_batch(*single, prompts, 6);
  const eplb::Placement p = skewed_placement(*ep, 4);
  ASSERT_GT(p.max_replicas, 1);
  ep->set_expert_placement(p);
  EXPECT_THROW(ep->set_expert_placement(p), Error) << "a second change while one is pending";
  run_until_placement(*ep, prompts, 1);
  EXPECT_EQ(ep->expert_placement().phy2log, p.phy2log);
  const BatchRun got = run_batch(*ep, prompts, 6);
  expect_same_as_one_rank(got, want);
  // Loads are counted per logical expert whatever the placement.
  ASSERT_EQ(got.prefill.expert_tokens.size(), want.prefill.expert_tokens.size());
  EXPECT_EQ(got.prefill.expert_tokens, want.prefill.expert_tokens);
  // A placement that does not fit the model is refused.
  eplb::Placement wrong = p;
  wrong.logical = 8;
  EXPECT_THROW(ep->set_expert_placement(wrong), Error);
  EXPECT_THROW(single->set_expert_placement(p), Error);
}

TEST(ExpertParallel, ExpertsThatDoNotSplitEvenlyAreRefused) {
  CACHALOT_REQUIRE_FIXTURE(dir, "tiny-dsv3");
  try {
    Model::load(dir, {.precision = Precision::kExact, .ep_ranks = 3});
    FAIL() << "3 ranks accepted for 16 experts";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("16 routed experts do not split evenly over 3 ranks"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cachalot::model
