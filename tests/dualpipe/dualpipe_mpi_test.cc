// The executor with ranks as processes: `mpirun -np N cachalot dualpipe train --check` for every
// schedule on 2 and 4 processes (oversubscribed: CI has 2 cores). --check fails the run unless
// each step's loss and gradients equal a sequential step.
#include <gtest/gtest.h>
#include <string>

#include "tests/support/test_support.h"

namespace {

std::string mpirun(int ranks, const std::string& args) {
  return cachalot::testing::mpirun_prefix(ranks) + cachalot::testing::cachalot_binary() + " dualpipe train " + args;
}

struct Case {
  const char* schedule;
  int ranks;
};

class DualPipeUnderMpirun : public ::testing::TestWithParam<Case> {};

TEST_P(DualPipeUnderMpirun, GradientsEqualSequential) {
  const Case c = GetParam();
  const std::string pp = std::to_string(c.ranks);
  const auto r = cachalot::testing::run_shell(mpirun(c.ranks, std::string("--pp ") + pp + " --schedule " + c.schedule +
                                               " --steps 2 --hidden 32 --ffn 48 --transport mpi --check --timeout 60"));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("on " + pp + " mpi ranks"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("step   1"), std::string::npos) << r.out;
}

INSTANTIATE_TEST_SUITE_P(Schedules, DualPipeUnderMpirun,
                         ::testing::Values(Case{"1f1b", 2}, Case{"zb1p", 4}, Case{"dualpipe", 2}, Case{"dualpipe", 4},
                                           Case{"dualpipev", 2}, Case{"dualpipev", 4}),
                         [](const auto& test) { return std::string(test.param.schedule) + "_" + std::to_string(test.param.ranks); });

TEST(DualPipeUnderMpirun, TooFewProcessesForThePipelineIsAnError) {
  const auto r = cachalot::testing::run_shell(mpirun(2, "--pp 4 --transport mpi"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("mpirun started 2 processes for --pp 4"), std::string::npos) << r.out;
}

}  // namespace
