// The engine on the tiny-dsv3 fixture in exact mode: batched, chunked, preempted and
// prefix-cached generation must give the same greedy tokens as one sequence run alone.
#include <gtest/gtest.h>

#include <numeric>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "engine/engine.h"
#include "ep/launch.h"
#include "model/expert_parallel.h"
#include "tests/support/test_support.h"

namespace cachalot::engine {
namespace {

using namespace std::chrono_literals;

std::shared_ptr<const model::Model> fixture_model(const std::string& dir) {
  static std::shared_ptr<const model::Model> m = model::Model::load(dir, {.precision = model::Precision::kExact});
  return m;
}

// Greedy continuation of one prompt, alone, without the engine.
std::vector<int32_t> reference_greedy(const model::Model& m, const std::vector<int32_t>& prompt, int n) {
  const int64_t blocks = (static_cast<int64_t>(prompt.size()) + n + 63) / 64;
  model::KvCache cache = m.make_kv_cache(blocks);
  std::vector<int32_t> table(static_cast<std::size_t>(blocks));
  std::iota(table.begin(), table.end(), 0);
  std::vector<int32_t> tokens = prompt, out;
  int64_t start = 0;
  while (static_cast<int>(out.size()) < n) {
    const model::SequenceStep step{std::span<const int32_t>(tokens).subspan(start), start, table};
    const auto o = m.forward({&step, 1}, cache);
    start = static_cast<int64_t>(tokens.size());
    const float* logits = o.logits.data<float>();
    const int32_t next = static_cast<int32_t>(std::max_element(logits, logits + m.config().vocab_size) - logits);
    out.push_back(next);
    tokens.push_back(next);
  }
  return out;
}

struct Collected {
  std::vector<int32_t> tokens;
  FinishEvent finish;
};

Collected collect(RequestStream& stream) {
  Collected c;
  while (true) {
    auto e = stream.next(60s);
    if (!e) throw std::runtime_error("no event within 60 s");
    if (e->token) c.tokens.push_back(e->token->token);
    if (e->finish) {
      c.finish = *e->finish;
      return c;
    }
  }
}

std::vector<int32_t> prompt_of(int length, int seed) {
  std::vector<int32_t> p(static_cast<std::size_t>(length));
  for (int i = 0; i < length; ++i) p[i] = (i * 37 + seed * 101 + 5) % 1000;
  return p;
}

RequestParams greedy(std::vector<int32_t> prompt, int64_t max_tokens) {
  RequestParams p;
  p.prompt = std::move(prompt);
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::fixture_path("tiny-dsv3");
    if (dir_.empty()) GTEST_SKIP() << "fixture tiny-dsv3 not found under " << testing::fixtures_dir();
    model_ = fixture_model(dir_);
  }
  std::string dir_;
  std::shared_ptr<const model::Model> model_;
};

TEST_F(EngineTest, ConcurrentChunkedRequestsMatchTheSingleSequenceReference) {
  // A small step budget forces chunked prefill beside decoding sequences.
  Engine engine(model_, nullptr, {.kv_blocks = 64, .max_batch_tokens = 48, .max_running = 8});
  const std::vector<int> lengths = {1, 7, 33, 64, 65, 130, 200, 3};
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (std::size_t i = 0; i < lengths.size(); ++i) streams.push_back(engine.submit(greedy(prompt_of(lengths[i], static_cast<int>(i)), 6)));
  for (std::size_t i = 0; i < lengths.size(); ++i) {
    const Collected c = collect(*streams[i]);
    EXPECT_EQ(c.finish.reason, FinishReason::kLength);
    EXPECT_EQ(c.finish.prompt_tokens, lengths[i]);
    EXPECT_EQ(c.finish.completion_tokens, 6);
    EXPECT_EQ(c.tokens, reference_greedy(*model_, prompt_of(lengths[i], static_cast<int>(i)), 6)) << "prompt " << i;
  }
  EXPECT_EQ(engine.metrics().snapshot().kv_blocks_used, 0);
}

TEST_F(EngineTest, RepeatedPromptHitsThePrefixCacheWithTheSameOutput) {
  Engine engine(model_, nullptr, {.kv_blocks = 64});
  const auto prompt = prompt_of(150, 9);
  const Collected first = collect(*engine.submit(greedy(prompt, 5)));
  const Collected second = collect(*engine.submit(greedy(prompt, 5)));
  EXPECT_EQ(first.finish.cached_prompt_tokens, 0);
  EXPECT_EQ(second.finish.cached_prompt_tokens, 128);  // two full blocks of 64
  EXPECT_EQ(second.tokens, first.tokens);
  EXPECT_EQ(first.tokens, reference_greedy(*model_, prompt, 5));
  EXPECT_EQ(engine.metrics().snapshot().prompt_cache_hit_tokens, 128u);
}

TEST_F(EngineTest, PreemptionUnderAFullCacheKeepsOutputsExact) {
  // 6 blocks for 4 sequences that each grow to 2-3 blocks: some must be preempted and recomputed.
  Engine engine(model_, nullptr, {.kv_blocks = 6, .max_batch_tokens = 512, .max_running = 4});
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 4; ++i) streams.push_back(engine.submit(greedy(prompt_of(60 + i, 20 + i), 70)));
  for (int i = 0; i < 4; ++i) {
    const Collected c = collect(*streams[i]);
    ASSERT_EQ(c.finish.reason, FinishReason::kLength);
    EXPECT_EQ(c.tokens, reference_greedy(*model_, prompt_of(60 + i, 20 + i), 70)) << "request " << i;
  }
  EXPECT_GT(engine.metrics().snapshot().preemptions, 0u);
  EXPECT_EQ(engine.metrics().snapshot().kv_blocks_used, 0);
}

TEST_F(EngineTest, CancellationFreesTheBlocks) {
  Engine engine(model_, nullptr, {.kv_blocks = 64});
  auto stream = engine.submit(greedy(prompt_of(100, 1), 900));
  for (int got = 0; got < 3;) {
    auto e = stream->next(60s);
    ASSERT_TRUE(e && e->token);
    ++got;
  }
  EXPECT_GT(engine.metrics().snapshot().kv_blocks_used, 0);
  stream->cancel();
  const Collected rest = collect(*stream);
  EXPECT_EQ(rest.finish.reason, FinishReason::kCancelled);
  for (int i = 0; i < 100 && engine.metrics().snapshot().kv_blocks_used != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(engine.metrics().snapshot().kv_blocks_used, 0);
  EXPECT_EQ(engine.metrics().snapshot().requests_cancelled, 1u);
}

TEST_F(EngineTest, RefusesRequestsThatCanNeverRunAndAFullQueue) {
  Engine engine(model_, nullptr, {.kv_blocks = 4, .max_running = 1, .max_waiting = 0});
  auto expect_error = [&](RequestParams p, ErrorKind kind, const std::string& fragment) {
    try {
      engine.submit(std::move(p));
      ADD_FAILURE() << "accepted: " << fragment;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind) << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_error(greedy({}, 4), ErrorKind::kInvalidArgument, "empty");
  expect_error(greedy({5, 1000}, 4), ErrorKind::kInvalidArgument, "outside the vocabulary");
  expect_error(greedy({5}, 0), ErrorKind::kInvalidArgument, "max_tokens");
  expect_error(greedy({5}, 1024), ErrorKind::kInvalidArgument, "context of 1024");
  expect_error(greedy(prompt_of(200, 1), 100), ErrorKind::kInvalidArgument, "KV blocks");
  RequestParams with_stop = greedy({5}, 4);
  with_stop.stop = {"x"};
  expect_error(with_stop, ErrorKind::kInvalidArgument, "tokenizer");
  auto running = engine.submit(greedy({5, 6}, 200));
  expect_error(greedy({5}, 4), ErrorKind::kResourceExhausted, "queue is full");
  EXPECT_EQ(collect(*running).finish.completion_tokens, 200);
  EXPECT_EQ(engine.metrics().snapshot().requests_rejected, 1u);
}

TEST_F(EngineTest, DrainFinishesInFlightWorkThenRefuses) {
  Engine engine(model_, nullptr, {.kv_blocks = 64});
  auto stream = engine.submit(greedy(prompt_of(10, 2), 20));
  engine.drain(30s);
  EXPECT_EQ(collect(*stream).finish.reason, FinishReason::kLength);
  EXPECT_THROW(engine.submit(greedy({5}, 4)), Error);
  // A drain whose grace runs out cancels what is left.
  Engine busy(model_, nullptr, {.kv_blocks = 64});
  auto slow = busy.submit(greedy(prompt_of(10, 3), 1000));
  busy.drain(1ms);
  EXPECT_EQ(collect(*slow).finish.reason, FinishReason::kCancelled);
}

// EP ranks as processes over shared memory: each process holds its own range of the KV blocks
// and attends for the sequences the engine placed there (rank 0 could not hold the others'
// blocks, so decoding correctly proves the followers kept them). Outputs equal the reference,
// sequences land on both ranks, and a repeated prompt hits the prefix cache on its rank.
TEST_F(EngineTest, ProcessRanksAttendForTheirOwnKvBlocks) {
  const std::vector<int> lengths = {5, 70, 130, 12, 64, 33};
  std::vector<std::vector<int32_t>> want;
  for (size_t i = 0; i < lengths.size(); ++i) want.push_back(reference_greedy(*model_, prompt_of(lengths[i], static_cast<int>(i)), 8));
  ep::TransportOptions o = model::expert_parallel_transport_options(model_->config(), 2);
  o.timeout = 60s;
  const std::vector<int> status = ep::run_shm_ranks(2, o, [&](ep::Transport& t) {
    const std::shared_ptr<ep::Transport> borrowed(&t, [](ep::Transport*) {});
    std::shared_ptr<const model::Model> m =
        model::Model::load(dir_, {.precision = model::Precision::kExact, .ep_transport = borrowed});
    if (t.rank() != 0) return m->follow();
    if (m->attention_ranks() != 2) throw std::runtime_error("expected 2 attention ranks");
    Engine engine(m, nullptr, {.kv_blocks = 2 * 16, .max_batch_tokens = 64, .max_running = 8});
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (size_t i = 0; i < lengths.size(); ++i) streams.push_back(engine.submit(greedy(prompt_of(lengths[i], static_cast<int>(i)), 8)));
    for (size_t i = 0; i < lengths.size(); ++i)
      if (collect(*streams[i]).tokens != want[i]) throw std::runtime_error(fmt::format("request {} differs", i));
    const MetricsSnapshot after = engine.metrics().snapshot();
    if (after.rank_admitted.size() != 2 || after.rank_admitted[0] == 0 || after.rank_admitted[1] == 0)
      throw std::runtime_error(fmt::format("sequences per rank: {}", fmt::join(after.rank_admitted, ",")));
    const Collected again = collect(*engine.submit(greedy(prompt_of(130, 2), 8)));
    if (again.tokens != want[2] || again.finish.cached_prompt_tokens != 128)
      throw std::runtime_error(fmt::format("repeat: {} cached tokens", again.finish.cached_prompt_tokens));
  });
  for (size_t r = 0; r < status.size(); ++r) EXPECT_EQ(ep::describe_exit_status(status[r]), "exited 0") << "rank " << r;
}

TEST(ExpertLoadWindow, SumsTheLastStepsOnly) {
  ExpertLoadWindow w(2);
  EXPECT_TRUE(w.totals().empty());
  w.add({{1, 0, 2}, {0, 3, 0}});
  w.add({{1, 1, 0}, {2, 0, 0}});
  EXPECT_EQ(w.totals(), (std::vector<float>{2, 1, 2, 2, 3, 0}));
  w.add({{0, 0, 5}, {0, 0, 1}});  // the first step leaves the window
  EXPECT_EQ(w.totals(), (std::vector<float>{1, 1, 5, 2, 0, 1}));
  EXPECT_EQ(w.layers(), 2);
  EXPECT_EQ(w.experts(), 3);
  EXPECT_EQ(w.steps(), 2);
}

// EPLB in the engine: a rebalance on request places the experts by the counted loads (with a
// redundant slot per rank); requests keep being served meanwhile and the outputs stay exact.
TEST_F(EngineTest, RebalancingTheExpertsKeepsOutputsExact) {
  const auto ep = std::shared_ptr<const model::Model>(
      model::Model::load(dir_, {.precision = model::Precision::kExact, .ep_ranks = 2}));
  Engine engine(ep, nullptr, {.kv_blocks = 64, .eplb_window_steps = 50});
  const std::vector<int> lengths = {9, 70, 33};
  auto run_all = [&] {
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (size_t i = 0; i < lengths.size(); ++i) streams.push_back(engine.submit(greedy(prompt_of(lengths[i], static_cast<int>(i)), 5)));
    for (size_t i = 0; i < lengths.size(); ++i)
      EXPECT_EQ(collect(*streams[i]).tokens, reference_greedy(*model_, prompt_of(lengths[i], static_cast<int>(i)), 5)) << i;
  };
  run_all();
  engine.request_rebalance();
  for (int i = 0; i < 20 && ep->expert_placement_version() == 0; ++i) run_all();
  ASSERT_EQ(ep->expert_placement_version(), 1);
  EXPECT_EQ(ep->expert_placement().physical, ep->config().n_routed_experts + 2);
  run_all();
  const MetricsSnapshot m = engine.metrics().snapshot();
  EXPECT_EQ(m.eplb_rebalances, 1u);
  EXPECT_GT(m.eplb_balancedness, 0);
  EXPECT_EQ(m.expert_load_layers, static_cast<int64_t>(ep->expert_placement().layers));
  EXPECT_NE(engine.metrics().render_prometheus().find("cachalot_expert_load{layer=\"0\",expert=\"0\"}"), std::string::npos);
  // Without expert parallelism there is nothing to rebalance.
  Engine single(model_, nullptr, {.kv_blocks = 8});
  EXPECT_THROW(single.request_rebalance(), Error);
}

}  // namespace
}  // namespace cachalot::engine
