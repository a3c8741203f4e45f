// The executor with ranks as processes: `mpirun -np N cachalot dualpipe train --check` for every
// schedule on 2 and 4 processes (oversubscribed: CI has 2 cores). --check fails the run unless
// each step's loss and gradients equal a sequential step.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <string>

namespace {

struct CommandRun {
  int status = -1;
  std::string output;
};

CommandRun run(const std::string& command) {
  CommandRun r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  std::array<char, 4096> buf{};
  while (fgets(buf.data(), buf.size(), pipe) != nullptr) r.output += buf.data();
  r.status = pclose(pipe);
  return r;
}

std::string mpirun(int ranks, const std::string& args) {
  std::string env = "ASAN_OPTIONS=detect_leaks=0 ";  // OpenMPI keeps allocations until exit
  if (geteuid() == 0) env += "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ";
  return env + CACHALOT_MPIEXEC + std::string(" --oversubscribe --mca btl self,vader -np ") + std::to_string(ranks) + " " +
         CACHALOT_BINARY + " dualpipe train " + args;
}

struct Case {
  const char* schedule;
  int ranks;
};

class DualPipeUnderMpirun : public ::testing::TestWithParam<Case> {};

TEST_P(DualPipeUnderMpirun, GradientsEqualSequential) {
  const Case c = GetParam();
  const std::string pp = std::to_string(c.ranks);
  const CommandRun r = run(mpirun(c.ranks, std::string("--pp ") + pp + " --schedule " + c.schedule +
                                               " --steps 2 --hidden 32 --ffn 48 --transport mpi --check --timeout 60"));
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("on " + pp + " mpi ranks"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("step   1"), std::string::npos) << r.output;
}

INSTANTIATE_TEST_SUITE_P(Schedules, DualPipeUnderMpirun,
                         ::testing::Values(Case{"1f1b", 2}, Case{"zb1p", 4}, Case{"dualpipe", 2}, Case{"dualpipe", 4},
                                           Case{"dualpipev", 2}, Case{"dualpipev", 4}),
                         [](const auto& test) { return std::string(test.param.schedule) + "_" + std::to_string(test.param.ranks); });

TEST(DualPipeUnderMpirun, TooFewProcessesForThePipelineIsAnError) {
  const CommandRun r = run(mpirun(2, "--pp 4 --transport mpi"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("mpirun started 2 processes for --pp 4"), std::string::npos) << r.output;
}

}  // namespace
