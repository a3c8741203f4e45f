// The mpi transport under mpirun with 2, 4 and 8 processes (oversubscribed: CI has 2 cores).
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

std::string mpirun(int ranks) {
  // Root may run mpirun only when it says so (CI containers run as root); shared memory and
  // self are the only byte transfer layers a single host needs.
  // OpenMPI keeps allocations until exit, which LeakSanitizer (asan preset) would report.
  std::string env = "ASAN_OPTIONS=detect_leaks=0 ";
  if (geteuid() == 0) env += "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ";
  return env + CACHALOT_MPIEXEC + std::string(" --oversubscribe --mca btl self,vader -np ") + std::to_string(ranks) + " " +
         CACHALOT_EP_MPI_CHECK;
}

class MpiRanks : public ::testing::TestWithParam<int> {};

TEST_P(MpiRanks, DispatchCombineAllCases) {
  const CommandRun r = run(mpirun(GetParam()));
  EXPECT_EQ(r.status, 0) << r.output;
  size_t ok = 0;
  for (size_t at = r.output.find(": ok"); at != std::string::npos; at = r.output.find(": ok", at + 1)) ++ok;
  EXPECT_EQ(ok, static_cast<size_t>(GetParam())) << r.output;
}
INSTANTIATE_TEST_SUITE_P(Ranks, MpiRanks, ::testing::Values(2, 4, 8));

}  // namespace
