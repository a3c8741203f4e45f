// The executor on 2 and 4 ranks (threads) for every schedule: loss and every parameter gradient
// after one step equal a single-process sequential step (1e-5 relative), the DualPipe copies stay
// identical, and a few SGD steps track the sequential model. Also the toy model's hand-written
// backward against finite differences, and failures (a rank that throws, a short message).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>

#include "core/error.h"
#include "dualpipe/executor.h"

namespace cachalot::dualpipe {
namespace {

constexpr std::chrono::milliseconds kTimeout{20'000};
constexpr double kTolerance = 1e-5;

ToyModelConfig small_config() {
  ToyModelConfig c;
  c.hidden = 16;
  c.ffn = 24;
  c.blocks_per_stage = 2;
  c.tokens = 4;
  c.seed = 7;
  return c;
}

struct Case {
  ScheduleKind kind;
  int ranks;
  int micro_batches;
};

class ExecutorMatchesSequential : public ::testing::TestWithParam<Case> {};

TEST_P(ExecutorMatchesSequential, LossAndGradients) {
  const Case p = GetParam();
  const ToyModelConfig config = small_config();
  const Schedule schedule = make_schedule(p.kind, p.ranks, p.micro_batches);
  const ToyBatch batch = make_toy_batch(config, p.micro_batches);
  SequentialModel reference(config, schedule.layout.stages);
  const double reference_loss = reference.step(batch);

  std::mutex mutex;
  std::vector<double> losses(p.ranks);
  std::vector<int> stages_checked(schedule.layout.stages, 0);
  std::vector<std::vector<float>> first_copy(schedule.layout.stages);
  run_local_peers(p.ranks, kTimeout, [&](PeerComm& comm) {
    PipelineExecutor ex(schedule, config, comm);
    const double loss = ex.step(batch);
    std::lock_guard lock(mutex);
    losses[comm.rank()] = loss;
    for (int c = 0; c < ex.chunks(); ++c) {
      const int s = ex.stage_of_chunk(c);
      EXPECT_LT(relative_difference(ex.chunk(c).grads(), reference.stage(s).grads()), kTolerance)
          << "rank " << comm.rank() << " chunk " << c << " stage " << s;
      // The two DualPipe copies of a stage hold bit-identical summed gradients.
      const std::span<const float> g = ex.chunk(c).grads();
      if (first_copy[s].empty())
        first_copy[s].assign(g.begin(), g.end());
      else
        EXPECT_TRUE(std::equal(g.begin(), g.end(), first_copy[s].begin())) << "stage " << s;
      ++stages_checked[s];
    }
  });
  for (int r = 0; r < p.ranks; ++r) EXPECT_NEAR(losses[r], reference_loss, kTolerance * reference_loss) << "rank " << r;
  for (int s = 0; s < schedule.layout.stages; ++s) EXPECT_EQ(stages_checked[s], schedule.layout.copies()) << "stage " << s;
}

INSTANTIATE_TEST_SUITE_P(
    Schedules, ExecutorMatchesSequential,
    ::testing::Values(Case{ScheduleKind::k1F1B, 2, 4}, Case{ScheduleKind::k1F1B, 4, 6}, Case{ScheduleKind::kZB1P, 2, 4},
                      Case{ScheduleKind::kZB1P, 4, 8}, Case{ScheduleKind::kDualPipe, 2, 4}, Case{ScheduleKind::kDualPipe, 4, 8},
                      Case{ScheduleKind::kDualPipe, 4, 12}, Case{ScheduleKind::kDualPipeV, 2, 4},
                      Case{ScheduleKind::kDualPipeV, 4, 8}, Case{ScheduleKind::kDualPipeV, 4, 11}),
    [](const auto& test) {
      return std::string(schedule_name(test.param.kind)) + "_pp" + std::to_string(test.param.ranks) + "_m" +
             std::to_string(test.param.micro_batches);
    });

TEST(Executor, TrainingTracksTheSequentialModel) {
  const ToyModelConfig config = small_config();
  const Schedule schedule = make_schedule(ScheduleKind::kDualPipeV, 2, 6);
  const ToyBatch batch = make_toy_batch(config, 6);
  SequentialModel reference(config, schedule.layout.stages);
  std::vector<double> expected;
  for (int step = 0; step < 5; ++step) {
    expected.push_back(reference.step(batch));
    reference.sgd(0.2f);
  }
  EXPECT_LT(expected.back(), expected.front());
  std::vector<double> got(5);
  run_local_peers(2, kTimeout, [&](PeerComm& comm) {
    PipelineExecutor ex(schedule, config, comm);
    for (int step = 0; step < 5; ++step) {
      const double loss = ex.step(batch);
      ex.sgd(0.2f);
      if (comm.rank() == 0) got[step] = loss;
    }
  });
  for (int step = 0; step < 5; ++step) EXPECT_NEAR(got[step], expected[step], kTolerance * expected[step]) << "step " << step;
}

TEST(MlpStage, BackwardMatchesFiniteDifferences) {
  ToyModelConfig config = small_config();
  config.hidden = 5;
  config.ffn = 7;
  config.tokens = 3;
  MlpStage stage(config, 0);
  const ToyBatch batch = make_toy_batch(config, 1);
  const auto loss_of = [&](const MlpStage& s, const std::vector<float>& x) {
    MlpStage::Saved saved;
    std::vector<float> grad;
    return mse_loss(s.forward(x, &saved), batch.targets[0], 1, &grad);
  };
  MlpStage::Saved saved;
  std::vector<float> dy;
  mse_loss(stage.forward(batch.inputs[0], &saved), batch.targets[0], 1, &dy);
  MlpStage::WeightWork work;
  const std::vector<float> dx = stage.backward_input(dy, std::move(saved), &work);
  stage.backward_weight(work);
  const float h = 1e-2f;
  for (size_t i = 0; i < stage.params().size(); i += 3) {
    MlpStage plus = stage, minus = stage;
    plus.params()[i] += h;
    minus.params()[i] -= h;
    const double numeric = (loss_of(plus, batch.inputs[0]) - loss_of(minus, batch.inputs[0])) / (2 * h);
    EXPECT_NEAR(stage.grads()[i], numeric, 2e-3 * std::max(1.0, std::abs(numeric))) << "param " << i;
  }
  for (size_t i = 0; i < dx.size(); ++i) {
    std::vector<float> plus = batch.inputs[0], minus = batch.inputs[0];
    plus[i] += h;
    minus[i] -= h;
    const double numeric = (loss_of(stage, plus) - loss_of(stage, minus)) / (2 * h);
    EXPECT_NEAR(dx[i], numeric, 2e-3 * std::max(1.0, std::abs(numeric))) << "input " << i;
  }
}

TEST(Executor, AFailingRankStopsTheOthersWithItsReason) {
  const Schedule schedule = make_schedule(ScheduleKind::k1F1B, 4, 8);
  const ToyModelConfig config = small_config();
  const ToyBatch batch = make_toy_batch(config, 8);
  const auto start = std::chrono::steady_clock::now();
  try {
    run_local_peers(4, kTimeout, [&](PeerComm& comm) {
      if (comm.rank() == 2) throw Error(ErrorKind::kIo, "rank 2 lost its disk");
      PipelineExecutor ex(schedule, config, comm);
      ex.step(batch);
    });
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lost its disk"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, kTimeout / 2);  // not by timing out
}

TEST(Executor, ASilentPeerTimesOut) {
  EXPECT_THROW(run_local_peers(2, std::chrono::milliseconds(100),
                               [&](PeerComm& comm) {
                                 if (comm.rank() == 1) return;  // never sends
                                 float x[4];
                                 comm.recv_floats(1, 0, x);
                               }),
               Error);
}

TEST(Executor, AMessageOfTheWrongSizeIsAnError) {
  try {
    run_local_peers(2, kTimeout, [&](PeerComm& comm) {
      float x[4] = {};
      if (comm.rank() == 1) return comm.send_floats(0, 5, std::span(x, 3));
      comm.recv_floats(1, 5, x);
    });
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorruptData);
  }
}

TEST(Executor, RejectsAGroupOfTheWrongSizeAndBadConfig) {
  const Schedule schedule = make_schedule(ScheduleKind::k1F1B, 4, 8);
  EXPECT_THROW(run_local_peers(2, kTimeout, [&](PeerComm& comm) { PipelineExecutor ex(schedule, small_config(), comm); }), Error);
  ToyModelConfig bad = small_config();
  bad.hidden = 0;
  EXPECT_THROW(make_toy_batch(bad, 2), Error);
}

}  // namespace
}  // namespace cachalot::dualpipe
